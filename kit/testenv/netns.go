package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Namespaces is a set of network namespaces on one bridge.
type Namespaces struct {
	Bridge string
	Names  []string
}

// Exec returns the command that runs args in namespace i.
func (n Namespaces) Exec(i int, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Names[i]}, args...)...)
}

// IPv4Namespaces makes one namespace per address (each a /24 on eth0) on
// a new bridge, with IPv6 disabled before any link exists: Debian's
// boothd 1.0 hangs at start on kernels ≥ 6.9 when IPv6 addresses exist
// (ClusterLabs/booth#139). tag (a few characters) keeps the names of
// concurrent tests apart; everything is removed at cleanup.
func IPv4Namespaces(t testing.TB, tag string, addrs ...string) Namespaces {
	t.Helper()
	RequireRoot(t, "network namespaces")
	RequireTool(t, "ip", "iproute2")
	tag = fmt.Sprintf("%d%s", os.Getpid()%100000, tag)
	ns := Namespaces{Bridge: "gbw" + tag}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	run("ip", "link", "add", ns.Bridge, "type", "bridge")
	t.Cleanup(func() { exec.Command("ip", "link", "del", ns.Bridge).Run() })
	run("ip", "link", "set", ns.Bridge, "up")
	for i, a := range addrs {
		n := fmt.Sprintf("gbw%s-%d", tag, i)
		run("ip", "netns", "add", n)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", n).Run() })
		veth := fmt.Sprintf("gbw%sv%d", tag, i)
		run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", n)
		run("ip", "link", "set", veth, "master", ns.Bridge, "up")
		for _, k := range []string{"all", "default", "lo", "eth0"} {
			run("ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv6.conf."+k+".disable_ipv6=1")
		}
		run("ip", "netns", "exec", n, "ip", "addr", "add", a+"/24", "dev", "eth0")
		run("ip", "netns", "exec", n, "ip", "link", "set", "eth0", "up")
		run("ip", "netns", "exec", n, "ip", "link", "set", "lo", "up")
		ns.Names = append(ns.Names, n)
	}
	return ns
}
