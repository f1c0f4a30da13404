package report

import (
	"fmt"
	"os"
	"runtime"
	"time"
)

// Machine describes where a scenario ran.
type Machine struct {
	Host       string    `json:"host"`
	Cores      int       `json:"cores"`
	GOMAXPROCS int       `json:"gomaxprocs"`
	OS         string    `json:"os"`
	Go         string    `json:"go"`
	PostgreSQL string    `json:"postgresql,omitempty"`
	Date       time.Time `json:"date"`
}

// ThisMachine describes this process's machine now.
func ThisMachine() Machine {
	host, _ := os.Hostname()
	return Machine{Host: host, Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version(), Date: time.Now().UTC()}
}

func (m Machine) String() string {
	s := fmt.Sprintf("%s, %d cores (GOMAXPROCS %d), %s, %s", m.Host, m.Cores, m.GOMAXPROCS, m.OS, m.Go)
	if m.PostgreSQL != "" {
		s += ", PostgreSQL " + m.PostgreSQL
	}
	return s + ", " + m.Date.Format("2006-01-02 15:04 MST") + "; load generator, servers and database on the same machine"
}
