package benchkit

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procStat returns the fields of /proc/PID/stat after the command name:
// [0] state, [2] process group, [11] utime, [12] stime.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndex(s, ")")
	if i < 0 || i+2 > len(s) {
		return nil
	}
	if f := strings.Fields(s[i+2:]); len(f) > 12 {
		return f
	}
	return nil
}

// CPUSeconds is the CPU time (user and system) process pid has used.
func CPUSeconds(pid int) float64 {
	return cpuOf(procStat(pid))
}

// GroupCPUSeconds is the CPU time the live processes of process group
// pgid have used (a server that forks workers, as NSD does).
func GroupCPUSeconds(pgid int) float64 {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	total := 0.0
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if f := procStat(pid); f != nil && f[2] == strconv.Itoa(pgid) {
			total += cpuOf(f)
		}
	}
	return total
}

func cpuOf(f []string) float64 {
	if f == nil {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // clock ticks (USER_HZ is 100 on Linux)
}
