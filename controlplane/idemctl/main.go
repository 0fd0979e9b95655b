// Command idemctl is the operator CLI of idemgate. It computes what the Wasm
// filter computes (canonical JSON, request fingerprints) by calling the same
// package, so an operator can reproduce a filter decision by hand.
//
// Run "idemctl help" for the commands, flags, output shapes and exit status.
package main

import "os"

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }
