// Command goverify is the reference side of meshgate's X.509 differential test
// (tests/trust/x509_differential_test.ts): it runs each case through Go's
// crypto/x509 Certificate.Verify and prints the verdicts.
//
// Input on stdin: a JSON array of
//
//	{"name", "leaf": pem, "intermediates": [pem], "roots": [pem], "at": RFC3339,
//	 "usage": "clientAuth" | "serverAuth"}
//
// Output on stdout: a JSON array of {"name", "ok", "error"} in the same order. A
// certificate Go cannot parse makes its case ok:false with the parse error.
// Standard library only; no network.
package main

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"time"
)

type testCase struct {
	Name          string   `json:"name"`
	Leaf          string   `json:"leaf"`
	Intermediates []string `json:"intermediates"`
	Roots         []string `json:"roots"`
	At            string   `json:"at"`
	Usage         string   `json:"usage"`
}

type verdict struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

func parse(what, text string) (*x509.Certificate, error) {
	block, _ := pem.Decode([]byte(text))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("parse %s: no CERTIFICATE PEM block", what)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", what, err)
	}
	return cert, nil
}

// fatal reports a malformed case: a bug of the harness, never a verdict.
func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "goverify: "+format+"\n", args...)
	os.Exit(2)
}

func run(c testCase) error {
	at, err := time.Parse(time.RFC3339, c.At)
	if err != nil {
		fatal("case %q: bad at %q: %v", c.Name, c.At, err)
	}
	var usage x509.ExtKeyUsage
	switch c.Usage {
	case "clientAuth":
		usage = x509.ExtKeyUsageClientAuth
	case "serverAuth":
		usage = x509.ExtKeyUsageServerAuth
	default:
		fatal("case %q: bad usage %q", c.Name, c.Usage)
	}
	leaf, err := parse("leaf", c.Leaf)
	if err != nil {
		return err
	}
	intermediates := x509.NewCertPool()
	for i, p := range c.Intermediates {
		cert, err := parse(fmt.Sprintf("intermediate %d", i), p)
		if err != nil {
			return err
		}
		intermediates.AddCert(cert)
	}
	roots := x509.NewCertPool()
	for i, p := range c.Roots {
		cert, err := parse(fmt.Sprintf("root %d", i), p)
		if err != nil {
			return err
		}
		roots.AddCert(cert)
	}
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	return err
}

func main() {
	var cases []testCase
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		fatal("reading cases: %v", err)
	}
	out := make([]verdict, 0, len(cases))
	for _, c := range cases {
		v := verdict{Name: c.Name, OK: true}
		if err := run(c); err != nil {
			v.OK = false
			v.Error = err.Error()
		}
		out = append(out, v)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	if err := enc.Encode(out); err != nil {
		fatal("writing verdicts: %v", err)
	}
}
