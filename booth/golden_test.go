package booth

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/geobooth/geobooth/booth/boothconf"

	"github.com/geobooth/geobooth/kit/testenv"
)

// The codec against the real boothd: three Debian boothd members in
// network namespaces (IPv4 only: boothd 1.0 hangs at start on kernels
// ≥ 6.9 when IPv6 addresses exist, ClusterLabs/booth#139), a grant, a few
// renewals; every datagram on the bridge must decode, authenticated or
// not, and encode back to the same bytes, HMAC included.
func TestCodecMatchesRealBoothd(t *testing.T) {
	testenv.RequireRoot(t, "network namespaces")
	for _, tool := range [][2]string{{"boothd", "booth"}, {"booth", "booth"}, {"tcpdump", "tcpdump"}, {"cibadmin", "pacemaker-cli-utils"}, {"ip", "iproute2"}} {
		testenv.RequireTool(t, tool[0], tool[1])
	}
	for _, auth := range []bool{false, true} {
		t.Run(map[bool]string{false: "no authfile", true: "authfile"}[auth], func(t *testing.T) {
			dir := t.TempDir()
			var key []byte
			conf := "transport = UDP\nport = 9929\n"
			if auth {
				key = []byte("a booth test key of some length")
				path := filepath.Join(dir, "authkey")
				if err := os.WriteFile(path, append(key, '\n'), 0o600); err != nil {
					t.Fatal(err)
				}
				conf += "authfile = " + path + "\n"
			}
			addrs := []string{"10.78.0.1", "10.78.0.2", "10.78.0.3"}
			conf += fmt.Sprintf("site = %s\nsite = %s\narbitrator = %s\nticket = \"web\"\n    expire = 10\n    timeout = 1\n    retries = 3\n    renewal-freq = 5\n", addrs[0], addrs[1], addrs[2])
			confPath := filepath.Join(dir, "booth.conf")
			if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
				t.Fatal(err)
			}
			ns := testenv.IPv4Namespaces(t, map[bool]string{false: "n", true: "a"}[auth], addrs...)
			pcap := filepath.Join(dir, "booth.pcap")
			dump := exec.Command("tcpdump", "-i", ns.Bridge, "-U", "-w", pcap, "udp", "port", "9929")
			if err := dump.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { dump.Process.Kill(); dump.Wait() })
			// tcpdump is ready once it has created its file.
			testenv.Eventually(t, 10*time.Second, func() error { _, err := os.Stat(pcap); return err })
			for i, n := range ns.Names {
				cib := filepath.Join(dir, fmt.Sprintf("cib-%d.xml", i))
				out, err := exec.Command("cibadmin", "--empty").Output()
				if err != nil {
					t.Fatalf("cibadmin --empty: %v", err)
				}
				if err := os.WriteFile(cib, out, 0o666); err != nil {
					t.Fatal(err)
				}
				d := exec.Command("ip", "netns", "exec", n, "env", "CIB_file="+cib, "boothd", "daemon", "-S", "-D", "-c", confPath,
					"-l", filepath.Join(dir, fmt.Sprintf("booth-%d.pid", i)))
				logf, _ := os.Create(filepath.Join(dir, fmt.Sprintf("boothd-%d.log", i)))
				d.Stdout, d.Stderr = logf, logf
				if err := d.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { d.Process.Kill(); d.Wait() })
			}
			list := func(i int) string {
				out, _ := exec.Command("ip", "netns", "exec", ns.Names[i], "booth", "list", "-c", confPath, "-s", addrs[i]).CombinedOutput()
				return string(out)
			}
			testenv.Eventually(t, 20*time.Second, func() error {
				out, err := exec.Command("ip", "netns", "exec", ns.Names[0], "booth", "grant", "-c", confPath, "-s", addrs[0], "web").CombinedOutput()
				if err != nil {
					return fmt.Errorf("booth grant: %v %s", err, out)
				}
				return nil
			})
			testenv.Eventually(t, 20*time.Second, func() error {
				if s := list(1); !strings.Contains(s, "leader: "+addrs[0]) {
					return fmt.Errorf("west does not see east lead: %q", s)
				}
				return nil
			})
			// Until a renewal (renewal-freq 5 s) after the grant's (tcpdump
			// -U writes each packet as it comes).
			var datagrams [][]byte
			testenv.Eventually(t, 30*time.Second, func() error {
				var err error
				if datagrams, err = readPcapUDP(pcap); err != nil {
					return err
				}
				n := 0
				for _, b := range datagrams {
					if len(b) >= HeaderSize && Code(binary.BigEndian.Uint32(b[28:])) == CmdUpdate {
						n++
					}
				}
				if n < 4 {
					return fmt.Errorf("%d UpdE captured, want 4 (the grant's and a renewal's, to each peer)", n)
				}
				return nil
			})
			seen := map[Code]int{}
			ids := map[uint32]bool{}
			for _, a := range addrs {
				ids[boothconf.SiteID(netip.MustParseAddr(a))] = true
			}
			for i, b := range datagrams {
				m, err := Decode(b, key)
				if err != nil {
					t.Fatalf("datagram %d (%d bytes): %v\n% x", i, len(b), err, b)
				}
				if !ids[m.From] {
					t.Fatalf("datagram %d from site id %#x, not one of the members' %v", i, m.From, ids)
				}
				if again := Encode(m, key); !bytes.Equal(again, b) {
					t.Fatalf("datagram %d: re-encoded differs\nboothd % x\nours   % x", i, b, again)
				}
				seen[m.Cmd]++
			}
			for _, c := range []Code{CmdRequestVote, CmdVoteFor, CmdHeartbeat, CmdAck, CmdUpdate} {
				if seen[c] == 0 {
					t.Errorf("no %v among %d datagrams (%v)", c, len(datagrams), seen)
				}
			}
			t.Logf("%d datagrams decoded and re-encoded byte for byte: %v", len(datagrams), seen)
		})
	}
}

// readPcapUDP returns the UDP payloads of a classic pcap file of Ethernet
// frames carrying IPv4 (a last record still being written is left out).
func readPcapUDP(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 24 {
		return nil, fmt.Errorf("pcap of %d bytes", len(b))
	}
	var bo binary.ByteOrder = binary.LittleEndian
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d:
	default:
		bo = binary.BigEndian
	}
	if lt := bo.Uint32(b[20:]); lt != 1 {
		return nil, fmt.Errorf("pcap link type %d, want Ethernet", lt)
	}
	var out [][]byte
	for off := 24; off+16 <= len(b); {
		n := int(bo.Uint32(b[off+8:]))
		if off+16+n > len(b) {
			break
		}
		frame := b[off+16 : off+16+n]
		off += 16 + n
		if len(frame) < 14+20+8 || binary.BigEndian.Uint16(frame[12:]) != 0x0800 {
			continue
		}
		ip := frame[14:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != 17 || len(ip) < ihl+8 {
			continue
		}
		udp := ip[ihl:]
		ulen := int(binary.BigEndian.Uint16(udp[4:]))
		if ulen < 8 || ulen > len(udp) {
			continue
		}
		out = append(out, udp[8:ulen])
	}
	return out, nil
}
