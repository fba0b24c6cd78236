package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/geobooth/geobooth/api"

	"github.com/BurntSushi/toml"
)

// client talks to one geoboothd's HTTP API.
type client struct {
	base  string
	token string
	http  *http.Client
}

// defaultConfigDir is where the package puts the members' configurations.
var defaultConfigDir = "/etc/geobooth"

// defaultConfig is the one member configuration in defaultConfigDir (a
// TOML file with a top-level local), or why there is none.
func defaultConfig() (string, error) {
	paths, _ := filepath.Glob(filepath.Join(defaultConfigDir, "*.toml"))
	var found []string
	for _, p := range paths {
		var f struct {
			Local string `toml:"local"`
		}
		if _, err := toml.DecodeFile(p, &f); err == nil && f.Local != "" {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", fmt.Errorf("say which daemon: -config FILE or -addr HOST:PORT (or GEOBOOTH_CONFIG, GEOBOOTH_ADDR); no member configuration in %s", defaultConfigDir)
	}
	return "", fmt.Errorf("say which daemon: -config FILE or -addr HOST:PORT (or GEOBOOTH_CONFIG); %s holds several member configurations: %s",
		defaultConfigDir, strings.Join(found, ", "))
}

// newClient finds the API address and token from a daemon config, or from
// -addr and -token-file, or from the one member configuration in
// defaultConfigDir.
func newClient(cfgPath, addr, tokenFile, caFile string) (*client, error) {
	if cfgPath == "" && addr == "" {
		var err error
		if cfgPath, err = defaultConfig(); err != nil {
			return nil, err
		}
	}
	if cfgPath != "" {
		var f struct {
			API struct {
				Listen    string `toml:"listen"`
				TokenFile string `toml:"token_file"`
			} `toml:"api"`
			TLS struct {
				CAFile string `toml:"ca_file"`
			} `toml:"tls"`
		}
		if _, err := toml.DecodeFile(cfgPath, &f); err != nil {
			return nil, fmt.Errorf("read %s: %w", cfgPath, err)
		}
		rel := func(p string) string {
			if p != "" && !filepath.IsAbs(p) {
				return filepath.Join(filepath.Dir(cfgPath), p)
			}
			return p
		}
		if addr == "" {
			addr = f.API.Listen
			if f.TLS.CAFile != "" {
				addr = "https://" + addr
			}
		}
		if tokenFile == "" {
			tokenFile = rel(f.API.TokenFile)
		}
		if caFile == "" {
			caFile = rel(f.TLS.CAFile)
		}
	}
	if addr == "" {
		return nil, fmt.Errorf("%s has no [api] listen", cfgPath)
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
		if caFile != "" {
			addr = "https://" + strings.TrimPrefix(addr, "http://")
		}
	}
	c := &client{base: strings.TrimSuffix(addr, "/"), http: &http.Client{Timeout: 15 * time.Second}}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read the CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", caFile)
		}
		c.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}}
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("read token: %w", err)
		}
		c.token = strings.TrimSpace(string(b))
	}
	return c, nil
}

// call sends a request and decodes a JSON answer into out. API errors come
// back as exit errors with the daemon's reason.
func (c *client) call(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return fail(2, "%v", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fail(3, "cannot reach geoboothd at %s: %v (is it running?)", c.base, unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fail(3, "read answer from %s: %v", c.base, err)
	}
	if resp.StatusCode >= 300 {
		var r api.CommandResult
		if json.Unmarshal(data, &r) == nil && r.Error != "" {
			msg := r.Error
			if r.Detail != "" {
				msg += " (" + r.Detail + ")"
			}
			if resp.StatusCode == http.StatusUnauthorized {
				return fail(4, "%s: check the token (-token-file, or api.token_file of -config)", msg)
			}
			return fail(1, "%s", msg)
		}
		return fail(1, "%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fail(1, "bad answer from %s: %v", c.base, err)
		}
	}
	return nil
}

func unwrapURLError(err error) error {
	var ue interface{ Unwrap() error }
	for errors.As(err, &ue) {
		inner := ue.Unwrap()
		if inner == nil {
			break
		}
		err = inner
	}
	return err
}

func (c *client) ticket(name string) (api.Ticket, error) {
	var t api.Ticket
	err := c.call(http.MethodGet, "/api/v1/tickets/"+name, nil, &t)
	return t, err
}

// parseFlags parses flags that may come before, between or after the
// positional arguments (`grant web -F` as well as `grant -F web`).
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
			// COMMAND -h: its flags, on stdout, and success.
			var b strings.Builder
			fmt.Fprintf(&b, "usage: ticketctl [global flags] %s [flags] [args]\n\nflags of %s:\n", fs.Name(), fs.Name())
			fs.SetOutput(&b)
			fs.PrintDefaults()
			return nil, &helpText{text: b.String(), fs: fs}
		} else if err != nil {
			return nil, fail(2, "%s: %v", fs.Name(), err)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// helpText is asked-for help: printed on stdout, exit status 0. fs is the
// flag set of the command that was asked (for help, completion, man).
type helpText struct {
	text string
	fs   *flag.FlagSet
}

func (h *helpText) Error() string { return h.text }
