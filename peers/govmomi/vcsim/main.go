// Command vcsim is an interop peer: govmomi's vCenter simulator (the VPX model of govmomi
// 0.24.2, as packaged by Debian) run as its own process.
//
// It creates the inventory, starts the SOAP/REST server, prints the SDK URL
// (http://user:pass@127.0.0.1:PORT/sdk) as the first line of stdout, then serves until
// SIGTERM or SIGINT (or, with -exit-on-stdin-eof, until stdin closes), and then cleans up
// (Model.Remove deletes the datastore temp dirs).
//
// Build (GOPATH mode, see peers/build.sh):
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o vcsim ./peers/govmomi/vcsim
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"log"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"

	// Register the REST (vAPI) and other SDK endpoints on VPX models.
	_ "github.com/vmware/govmomi/lookup/simulator"
	_ "github.com/vmware/govmomi/pbm/simulator"
	_ "github.com/vmware/govmomi/sts/simulator"
	_ "github.com/vmware/govmomi/vapi/simulator"
)

// config holds the parsed command line.
type config struct {
	listen          string
	user            string
	password        string
	tls             bool
	datacenters     int
	clusters        int
	hostsPerCluster int
	standaloneHosts int
	vmsPerPool      int
	vms             int
	datastores      int
	portgroups      int
	pools           int
	folders         int
	autostart       bool
	stats           bool
	stdinEOF        bool
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("vcsim", flag.ContinueOnError)
	fs.StringVar(&c.listen, "listen", "127.0.0.1:0", "host:port to listen on (port 0 picks a free port)")
	fs.StringVar(&c.user, "user", "", "restrict login to this user (default: any non-empty user/password; URL shows user:pass)")
	fs.StringVar(&c.password, "password", "", "password for -user")
	fs.BoolVar(&c.tls, "tls", false, "serve HTTPS (self-signed certificate; clients must skip verification)")
	fs.IntVar(&c.datacenters, "datacenters", 1, "number of datacenters (Model.Datacenter)")
	fs.IntVar(&c.clusters, "clusters", 1, "clusters per datacenter (Model.Cluster)")
	fs.IntVar(&c.hostsPerCluster, "hosts-per-cluster", 3, "hosts per cluster (Model.ClusterHost)")
	fs.IntVar(&c.standaloneHosts, "standalone-hosts", 1, "standalone hosts per datacenter (Model.Host)")
	fs.IntVar(&c.vmsPerPool, "vms-per-host", 2, "VMs per resource pool (Model.Machine): each standalone host has one pool, each cluster one root pool; cluster hosts do not multiply it")
	fs.IntVar(&c.vms, "vms", -1, "total VMs (overrides -vms-per-host; must be a multiple of datacenters*(standalone-hosts+clusters))")
	fs.IntVar(&c.datastores, "datastores", 1, "local datastores per datacenter, each backed by a temp dir (Model.Datastore)")
	fs.IntVar(&c.portgroups, "portgroups", 1, "distributed portgroups per datacenter (Model.Portgroup)")
	fs.IntVar(&c.pools, "pools", 0, "child resource pools per cluster (Model.Pool; they hold no VMs)")
	fs.IntVar(&c.folders, "folders", 0, "datacenters placed inside folders (Model.Folder)")
	fs.BoolVar(&c.autostart, "autostart", true, "power on the created VMs (Model.Autostart)")
	fs.BoolVar(&c.stats, "stats", false, "print model creation time, object count and Go heap/RSS figures to stderr")
	fs.BoolVar(&c.stdinEOF, "exit-on-stdin-eof", false, "also shut down (cleanly) when stdin reaches EOF, e.g. when the parent test process dies")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() != 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if (c.user == "") != (c.password == "") {
		return c, errors.New("-user and -password must be given together")
	}
	for name, v := range map[string]int{
		"-datacenters": c.datacenters, "-clusters": c.clusters, "-hosts-per-cluster": c.hostsPerCluster,
		"-standalone-hosts": c.standaloneHosts, "-vms-per-host": c.vmsPerPool, "-datastores": c.datastores,
		"-portgroups": c.portgroups, "-pools": c.pools, "-folders": c.folders,
	} {
		if v < 0 {
			return c, fmt.Errorf("%s must not be negative (got %d)", name, v)
		}
	}
	if c.vms >= 0 {
		pools := c.datacenters * (c.standaloneHosts + c.clusters)
		switch {
		case pools == 0 && c.vms > 0:
			return c, fmt.Errorf("-vms %d needs at least one standalone host or cluster", c.vms)
		case pools == 0:
			c.vmsPerPool = 0
		case c.vms%pools != 0:
			return c, fmt.Errorf("-vms %d is not a multiple of the %d VM-holding resource pools (datacenters*(standalone-hosts+clusters)); try %d or %d",
				c.vms, pools, c.vms/pools*pools, (c.vms/pools+1)*pools)
		default:
			c.vmsPerPool = c.vms / pools
		}
	}
	if c.datastores == 0 && c.vmsPerPool > 0 {
		return c, errors.New("VMs need a datastore: -datastores must be at least 1 when VMs are created")
	}
	if _, _, err := net.SplitHostPort(c.listen); err != nil {
		return c, fmt.Errorf("-listen %q: %v", c.listen, err)
	}
	return c, nil
}

// procStatusKiB reads a "Key: N kB" field (VmRSS, VmHWM) of /proc/self/status; -1 if unknown.
func procStatusKiB(key string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	var v int64
	for _, line := range strings.Split(string(b), "\n") {
		if n, _ := fmt.Sscanf(line, key+": %d kB", &v); n == 1 {
			return v
		}
	}
	return -1
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("vcsim: ")
	c, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		log.Print(err)
		os.Exit(2)
	}

	m := simulator.VPX()
	m.Datacenter = c.datacenters
	m.Cluster = c.clusters
	m.ClusterHost = c.hostsPerCluster
	m.Host = c.standaloneHosts
	m.Machine = c.vmsPerPool
	m.Datastore = c.datastores
	m.Portgroup = c.portgroups
	m.Pool = c.pools
	m.Folder = c.folders
	m.Autostart = c.autostart

	// Stop requests that arrive while the (possibly long) model creation runs are honoured
	// right after it, so the datastore temp dirs are still removed.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	if c.stdinEOF {
		go func() {
			_, _ = io.Copy(ioutil.Discard, os.Stdin)
			stop <- syscall.SIGTERM
		}()
	}

	// Fail fast on an address that cannot be bound, before spending seconds on the model.
	if ln, err := net.Listen("tcp", c.listen); err != nil {
		log.Printf("-listen %s: %v", c.listen, err)
		os.Exit(1)
	} else {
		_ = ln.Close()
	}

	start := time.Now()
	if err := m.Create(); err != nil {
		m.Remove()
		log.Fatalf("creating the model: %v", err)
	}
	created := time.Since(start)
	select {
	case <-stop:
		m.Remove()
		log.Print("stopped before serving")
		return
	default:
	}

	listen := &url.URL{Host: c.listen}
	if c.user != "" {
		listen.User = url.UserPassword(c.user, c.password)
	}
	m.Service.Listen = listen
	if c.tls {
		m.Service.TLS = new(tls.Config)
	}
	m.Service.RegisterEndpoints = true

	s, err := newServer(m.Service)
	if err != nil {
		m.Remove()
		log.Fatal(err)
	}
	// The first stdout line is the contract with the tools and tests that start this peer.
	fmt.Println(s.URL.String())
	_ = os.Stdout.Sync()

	if c.stats {
		count := m.Count()
		// Settle memory first: collect garbage and return freed pages to the OS, so that RSS
		// measures what the model holds rather than garbage left over from creating it.
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(os.Stderr, "vcsim: created in %.3fs: %d VMs, %d hosts, %d entities; heap in use %d KiB; RSS %d KiB (peak %d KiB)\n",
			created.Seconds(), count.Machine, count.Host, countTotal(count), ms.HeapInuse/1024,
			procStatusKiB("VmRSS"), procStatusKiB("VmHWM"))
	}

	<-stop

	s.Close()
	m.Remove()
}

// newServer calls Service.NewServer, which panics when it cannot listen, and returns that as an error.
func newServer(svc *simulator.Service) (s *simulator.Server, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("starting the server on %s: %v", svc.Listen.Host, r)
		}
	}()
	return svc.NewServer(), nil
}

// countTotal sums the entity kinds Model.Count reports.
func countTotal(c simulator.Model) int {
	return c.Datacenter + c.Portgroup + c.Cluster + c.Datastore + c.Host + c.Machine + c.Pool + c.App +
		c.Folder + c.Pod + c.OpaqueNetwork
}
