package testcluster

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"
)

// Browser is a headless Chromium driven through chromedriver's WebDriver
// protocol (plain HTTP and JSON), for tests that must look at the page as
// rendered, scripts and all.
type Browser struct {
	t       testing.TB
	base    string
	session string
}

// NewBrowser starts chromedriver and a headless Chromium session at the
// given window size. javascript=false disables scripts (the no-JS view).
func NewBrowser(t testing.TB, width, height int, javascript bool) *Browser {
	t.Helper()
	driver := RequireTool(t, "chromedriver", "chromium-driver")
	chromium := RequireTool(t, "chromium", "chromium")
	port := FreePort(t)
	cmd := exec.Command(driver, fmt.Sprintf("--port=%d", port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	b := &Browser{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	Eventually(t, 10*time.Second, func() error {
		resp, err := http.Get(b.base + "/status")
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	opts := map[string]any{
		"binary": chromium,
		"args": []string{"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir(), fmt.Sprintf("--window-size=%d,%d", width, height)},
	}
	if !javascript {
		opts["prefs"] = map[string]any{"profile.managed_default_content_settings.javascript": 2}
	}
	var res struct {
		Value struct {
			SessionID string `json:"sessionId"`
		} `json:"value"`
	}
	b.call("POST", "/session", map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome", "goog:chromeOptions": opts}}}, &res)
	b.session = res.Value.SessionID
	t.Cleanup(func() { b.call("DELETE", "/session/"+b.session, nil, nil) })
	b.call("POST", b.path("/window/rect"), map[string]any{"width": width, "height": height}, nil)
	return b
}

func (b *Browser) path(p string) string { return "/session/" + b.session + p }

func (b *Browser) call(method, path string, body, out any) {
	b.t.Helper()
	var rd *bytes.Reader
	if body == nil {
		body = map[string]any{}
	}
	data, _ := json.Marshal(body)
	rd = bytes.NewReader(data)
	req, _ := http.NewRequest(method, b.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		b.t.Fatalf("webdriver %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var raw struct {
		Value json.RawMessage `json:"value"`
	}
	json.NewDecoder(resp.Body).Decode(&raw)
	if resp.StatusCode != http.StatusOK {
		b.t.Fatalf("webdriver %s %s: %s: %s", method, path, resp.Status, raw.Value)
	}
	if out != nil {
		if err := json.Unmarshal(append(append([]byte(`{"value":`), raw.Value...), '}'), out); err != nil {
			b.t.Fatalf("webdriver answer: %v", err)
		}
	}
}

// Open navigates to url.
func (b *Browser) Open(url string) { b.call("POST", b.path("/url"), map[string]any{"url": url}, nil) }

// Texts returns the rendered text (innerText) of every element matching
// the CSS selector, read in one script so a page that redraws itself
// cannot change under the reading.
func (b *Browser) Texts(selector string) []string {
	var res struct {
		Value []string `json:"value"`
	}
	sel, _ := json.Marshal(selector)
	b.Script("return Array.from(document.querySelectorAll("+string(sel)+")).map(e => e.innerText);", &res)
	return res.Value
}

// Script runs JavaScript in the page and returns its JSON result.
func (b *Browser) Script(js string, out any) {
	b.call("POST", b.path("/execute/sync"), map[string]any{"script": js, "args": []any{}}, out)
}

// Screenshot saves a PNG of the viewport to path.
func (b *Browser) Screenshot(path string) {
	var res struct {
		Value string `json:"value"`
	}
	b.call("GET", b.path("/screenshot"), nil, &res)
	png, err := base64.StdEncoding.DecodeString(res.Value)
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}
