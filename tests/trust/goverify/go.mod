module meshgate.test/goverify

go 1.26
