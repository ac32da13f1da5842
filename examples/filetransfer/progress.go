package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// progressMode is how a sender shows its progress.
type progressMode int

const (
	progressAuto  progressMode = iota // a bar on a terminal, lines otherwise
	progressBar                       // a bar redrawn in place
	progressPlain                     // a line every second or every tenth of the way
	progressNone
)

func parseProgressMode(s string) (progressMode, error) {
	switch s {
	case "auto":
		return progressAuto, nil
	case "bar":
		return progressBar, nil
	case "plain":
		return progressPlain, nil
	case "none":
		return progressNone, nil
	}
	return 0, fmt.Errorf("%w: -progress %q: want auto, bar, plain or none", errUsage, s)
}

// resolve turns auto into bar if f is a terminal (a character device), plain otherwise.
func (m progressMode) resolve(f *os.File) progressMode {
	if m != progressAuto {
		return m
	}
	if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		return progressBar
	}
	return progressPlain
}

// meter counts a send's progress and shows it; its printf writes report lines without tearing
// the bar.
type meter struct {
	mode  progressMode
	out   io.Writer
	total atomic.Int64 // bytes of all files
	done  atomic.Int64 // bytes the receiver has, resumed ones included
	skip  atomic.Int64 // bytes the receiver had before this run: not counted in the rate
	files int
	fdone atomic.Int32

	mu      sync.Mutex // guards out and what follows
	barUp   bool       // the bar is on the screen's last line
	lastAt  time.Time  // the last plain line's time and tenth
	lastTen int64
	samples [32]sample // recent (time, bytes) pairs for the rate
	ns      int

	quit, exited chan struct{}
	once         sync.Once
}

type sample struct {
	at time.Time
	n  int64
}

// tick is how often the meter looks at the counters.
const tick = 100 * time.Millisecond

func (m *meter) start(mode progressMode, out io.Writer, total int64, files int) {
	if out == nil {
		out = io.Discard
	}
	m.mode, m.out, m.files = mode, out, files
	m.total.Store(total)
	m.lastAt = time.Now()
	m.samples[0], m.ns = sample{at: m.lastAt}, 1
	m.quit, m.exited = make(chan struct{}), make(chan struct{})
	if mode == progressNone || mode == progressAuto {
		close(m.exited)
		return
	}
	go m.run()
}

func (m *meter) run() {
	defer close(m.exited)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-m.quit:
			return
		case now := <-t.C:
			m.show(now)
		}
	}
}

// stop ends the display, clearing the bar. Safe to call twice.
func (m *meter) stop() {
	m.once.Do(func() {
		close(m.quit)
		<-m.exited
		m.mu.Lock()
		if m.barUp {
			fmt.Fprint(m.out, "\r\033[K")
			m.barUp = false
		}
		m.mu.Unlock()
	})
}

func (m *meter) add(n int64)      { m.done.Add(n) }
func (m *meter) addTotal(n int64) { m.total.Add(n) }
func (m *meter) fileDone()        { m.fdone.Add(1) }

// resumed counts n bytes the receiver had already.
func (m *meter) resumed(n int64) {
	m.skip.Add(n)
	m.done.Add(n)
}

// printf writes one report line.
func (m *meter) printf(format string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.barUp {
		fmt.Fprint(m.out, "\r\033[K")
		m.barUp = false
	}
	fmt.Fprintf(m.out, format+"\n", args...)
}

// show draws the bar, or prints a line if a second or a tenth of the way passed since the last.
func (m *meter) show(now time.Time) {
	total, done := m.total.Load(), m.done.Load()
	moved := done - m.skip.Load()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ns == len(m.samples) {
		copy(m.samples[:], m.samples[1:])
		m.ns--
	}
	m.samples[m.ns] = sample{now, moved}
	m.ns++
	first := m.samples[0]
	var rate float64 // bytes per second over the last few seconds
	if dt := now.Sub(first.at).Seconds(); dt > 0 {
		rate = float64(moved-first.n) / dt
	}
	pct := int64(100)
	if total > 0 {
		pct = done * 100 / total
	}
	eta := "?"
	if rate > 0 {
		eta = fmtDuration(time.Duration(float64(total-done) / rate * float64(time.Second)))
	}
	files := fmt.Sprintf("%d/%d files", m.fdone.Load(), m.files)
	switch m.mode {
	case progressBar:
		const width = 30
		fill := int(pct * width / 100)
		bar := strings.Repeat("=", fill)
		if fill < width {
			bar += ">" + strings.Repeat(" ", width-fill-1)
		}
		fmt.Fprintf(m.out, "\r[%s] %3d%% %s/%s %s/s ETA %s %s\033[K",
			bar, pct, fmtBytes(done), fmtBytes(total), fmtRate(rate), eta, files)
		m.barUp = true
	case progressPlain:
		if ten := pct / 10; ten > m.lastTen || now.Sub(m.lastAt) >= time.Second {
			m.lastTen, m.lastAt = ten, now
			fmt.Fprintf(m.out, "progress %d%% %s of %s, %s/s, ETA %s, %s\n",
				pct, fmtBytes(done), fmtBytes(total), fmtRate(rate), eta, files)
		}
	}
}

// fmtBytes writes n in binary units, as file sizes usually are.
func fmtBytes(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
}

// fmtRate writes a rate in decimal megabytes, as network speeds usually are.
func fmtRate(r float64) string { return fmt.Sprintf("%.1f MB", r/1e6) }

func fmtDuration(d time.Duration) string {
	d = d.Round(time.Second)
	if d >= time.Hour {
		return fmt.Sprintf("%d:%02d:%02d", int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60)
	}
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}
