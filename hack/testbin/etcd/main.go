// Command etcd runs the etcd server from go.etcd.io/etcd/server/v3, whose own
// go.mod cannot be built with go install because of its replace directives.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
