package stack

import (
	"context"
	"fmt"
	"time"
)

// Supervision defaults (Config's zero values).
const (
	DefaultRestartBackoff = 200 * time.Millisecond
	DefaultMaxRestarts    = 5
	DefaultRestartWindow  = time.Minute
	maxRestartBackoff     = 5 * time.Second
)

// EventKind says what happened to a supervised component.
type EventKind string

// Event kinds, in the order a restart goes through them.
const (
	EventDied    EventKind = "died"    // exited without being asked to
	EventBack    EventKind = "back"    // restarted and ready again
	EventGaveUp  EventKind = "gave up" // restarted too often: left down, reported on Failed
	EventNoStart EventKind = "failed to restart"
)

// Event tells about a supervised component's death and restart.
type Event struct {
	Component string
	Kind      EventKind
	Err       error         // the exit (EventDied, EventGaveUp) or the failed start (EventNoStart)
	Delay     time.Duration // EventDied, EventNoStart: the wait before the next attempt
	Restarts  int           // restarts within the window, this one included
	Pid       int           // EventBack: the new process
	Log       string        // the component's log file
}

func (e Event) String() string {
	switch e.Kind {
	case EventDied, EventNoStart:
		return fmt.Sprintf("%s %s (%v); restarting it in %v (restart %d); its log: %s", e.Component, e.Kind, e.Err, e.Delay, e.Restarts, e.Log)
	case EventBack:
		return fmt.Sprintf("%s is back (pid %d)", e.Component, e.Pid)
	case EventGaveUp:
		return fmt.Sprintf("%s keeps dying (%v after %d restarts): not restarting it again; its log: %s", e.Component, e.Err, e.Restarts, e.Log)
	}
	return fmt.Sprintf("%s %s: %v", e.Component, e.Kind, e.Err)
}

// supervisor restarts one component whenever it exits unasked, with a
// backoff that doubles with each restart in the window, and gives up once
// more than MaxRestarts fall within RestartWindow (a crash loop: restarting
// it faster helps nobody, and the operator should read its log).
type supervisor struct {
	s    *Stack
	p    *proc
	died chan error // the proc's unasked exits; buffered, never blocks the proc
}

// supervise makes p restart on its own from now on.
func (s *Stack) supervise(p *proc) {
	sv := &supervisor{s: s, p: p, died: make(chan error, 1)}
	p.mu.Lock()
	p.crashed = func(_ string, err error) {
		select {
		case sv.died <- err:
		default: // one report pending is enough: it restarts once
		}
	}
	p.mu.Unlock()
	s.supWG.Add(1)
	go sv.run()
}

func (sv *supervisor) run() {
	defer sv.s.supWG.Done()
	ctx := sv.s.supCtx
	var restarts []time.Time
	for {
		var err error
		select {
		case err = <-sv.died:
		case <-ctx.Done():
			return
		}
		kind := EventDied
		for {
			now := time.Now()
			restarts = append(pruneBefore(restarts, now.Add(-sv.s.cfg.RestartWindow)), now)
			if len(restarts) > sv.s.cfg.MaxRestarts {
				sv.s.notify(Event{Component: sv.p.name, Kind: EventGaveUp, Err: err, Restarts: len(restarts) - 1, Log: sv.p.logPath})
				sv.s.fail(fmt.Errorf("%s exited %d times within %v, last: %w; not restarting it again; its log: %s",
					sv.p.name, len(restarts), sv.s.cfg.RestartWindow, err, sv.p.logPath))
				return
			}
			delay := backoff(sv.s.cfg.RestartBackoff, len(restarts))
			sv.s.notify(Event{Component: sv.p.name, Kind: kind, Err: err, Delay: delay, Restarts: len(restarts), Log: sv.p.logPath})
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return
			}
			if err = sv.start(ctx); err == nil {
				sv.s.notify(Event{Component: sv.p.name, Kind: EventBack, Pid: sv.p.pid(), Restarts: len(restarts), Log: sv.p.logPath})
				break
			}
			if ctx.Err() != nil {
				return
			}
			kind = EventNoStart
			// A run that exited before it was ready has reported that exit
			// (crashed runs before the exit channel closes): it is this
			// failure, not another death, and says best what went wrong.
			select {
			case exit := <-sv.died:
				err = exit
			default:
			}
		}
	}
}

// start runs the process again and waits until it is ready; a run that is
// not ready in time is stopped.
func (sv *supervisor) start(ctx context.Context) error {
	sv.s.supMu.Lock()
	if sv.s.stopping {
		sv.s.supMu.Unlock()
		return context.Canceled
	}
	err := sv.p.start()
	sv.s.supMu.Unlock()
	if err != nil {
		return err
	}
	if sv.p.ready == nil {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := sv.p.waitReady(rctx, sv.p.ready); err != nil {
		sv.p.stop()
		return err
	}
	return nil
}

func pruneBefore(ts []time.Time, cutoff time.Time) []time.Time {
	out := ts[:0]
	for _, t := range ts {
		if t.After(cutoff) {
			out = append(out, t)
		}
	}
	return out
}

// backoff is base doubled for each earlier restart in the window, capped
// at maxRestartBackoff or base, whichever is longer.
func backoff(base time.Duration, n int) time.Duration {
	limit := max(base, maxRestartBackoff)
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}
