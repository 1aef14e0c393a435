// @peculiar/x509 resolves its internals through tsyringe, which needs the Reflect metadata
// polyfill loaded first; every module of ours imports x509 through this file.
import "reflect-metadata";
export * as x509 from "@peculiar/x509";
