// Command etcd is the upstream etcd server, built from Go modules because no prebuilt binary can be fetched here.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
