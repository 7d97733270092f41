// Command pause is the sandbox ("pause") image of test/node's real node:
// it holds a pod's namespaces and exits on SIGTERM or SIGINT. Nothing can
// be pulled on the build machines, so the test builds it and imports it.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
