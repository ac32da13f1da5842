package core

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
)

// Sentinel errors. Check them with errors.Is: the errors a Session returns wrap them with detail.
var (
	// ErrMessageTooLarge is returned by Send when a message is larger than the peer accepts
	// (the smaller of this side's and the peer's MaxMessageSize). Nothing was buffered: split the
	// message, or raise MaxMessageSize on both sides.
	ErrMessageTooLarge = errors.New("ftsl: message too large")

	// ErrSessionClosed is returned by calls on a session that was closed or aborted, by either
	// side. Start a new session to talk again.
	ErrSessionClosed = errors.New("ftsl: session closed")

	// ErrSessionLost means the session ended without a close: the server refused to resume it
	// (it expired, or the server forgot it), or the client did not come back within ResumeWindow.
	// Messages not yet acknowledged may not have arrived; start a new session.
	ErrSessionLost = errors.New("ftsl: session lost")

	// ErrBufferFull is returned by TrySend when the sent buffer has no room; Send would block.
	ErrBufferFull = errors.New("ftsl: send buffer full")

	// ErrProtocol means the peer broke the protocol (a malformed or unexpected frame); the
	// error wraps the detail. The session is aborted.
	ErrProtocol = errors.New("ftsl: protocol error")

	// ErrUnknownSession means a resume named a session the server does not have, or gave the
	// wrong token, or the session expired. The client sees it wrapped in ErrSessionLost.
	ErrUnknownSession = errors.New("ftsl: unknown session")

	// ErrNotHeld is returned by Settle for a message that is not the one the application holds.
	ErrNotHeld = errors.New("ftsl: message not held")

	// ErrSessionMoved is returned by calls on a server session whose listener exported it
	// (Listener.Export): the session lives on in the process that imports the state, and this
	// copy of it is inert. It also matches ErrSessionClosed. Use the handle the import returned.
	ErrSessionMoved error = &aliasError{"ftsl: session moved to another listener", ErrSessionClosed}

	// ErrNotPaused is returned by Listener.Export on a listener whose Pause has not completed.
	ErrNotPaused = errors.New("ftsl: listener not paused")

	// ErrListenerPaused is returned by Listener.Shutdown on a paused listener: its sessions
	// cannot reach their peers. Call Continue first, or Close.
	ErrListenerPaused = errors.New("ftsl: listener paused")

	// ErrInvalidState means a ListenerState handed to NewListenerFrom is corrupt or inconsistent;
	// the error wraps the detail, naming the session and the field. Nothing was imported.
	ErrInvalidState = errors.New("ftsl: invalid listener state")
)

// aliasError is a sentinel that also matches a broader one.
type aliasError struct {
	msg  string
	also error
}

func (e *aliasError) Error() string        { return e.msg }
func (e *aliasError) Is(target error) bool { return target == e.also }

// protocolError wraps ErrProtocol with what was wrong.
func protocolError(format string, args ...any) error {
	return ftslerr.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// RejectError is the server's refusal of a handshake, as the client sees it.
type RejectError struct {
	Code   RejectCode
	Reason string
}

func (e *RejectError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("ftsl: handshake rejected: %v", e.Code)
	}
	return fmt.Sprintf("ftsl: handshake rejected: %v: %s", e.Code, e.Reason)
}

// Is lets errors.Is match a rejection against the sentinel that says what to do about it.
func (e *RejectError) Is(target error) bool {
	switch e.Code {
	case RejectUnknownSession:
		return target == ErrUnknownSession || target == ErrSessionLost
	case RejectMismatch:
		return target == ErrSessionLost
	case RejectClosed:
		return target == ErrSessionClosed
	case RejectMalformed:
		return target == ErrProtocol
	}
	return false
}

// RejectCode says why a server refused a handshake.
type RejectCode uint16

// Reject codes, as carried by a REJECT frame.
const (
	RejectVersion        RejectCode = 1 // no protocol version in common
	RejectUnknownSession RejectCode = 2 // unknown session, wrong token, or expired
	RejectBusy           RejectCode = 3 // too many sessions or handshakes; retry later
	RejectMalformed      RejectCode = 4 // the handshake frame was malformed
	RejectMismatch       RejectCode = 5 // the two sides' states cannot be reconciled
	RejectClosed         RejectCode = 6 // the listener is closing
	// RejectMoving: the server is paused, moving to another process or address. The session is
	// not lost: a resuming client asks its Resolver again and retries with backoff.
	RejectMoving RejectCode = 7
)

func (c RejectCode) String() string {
	switch c {
	case RejectVersion:
		return "no common protocol version"
	case RejectUnknownSession:
		return "unknown or expired session"
	case RejectBusy:
		return "server busy"
	case RejectMalformed:
		return "malformed handshake"
	case RejectMismatch:
		return "session state mismatch"
	case RejectClosed:
		return "listener closing"
	case RejectMoving:
		return "server moving"
	}
	return fmt.Sprintf("reject code %d", uint16(c))
}

// errorWithReason is sentinel with what happened and, if known, why.
func errorWithReason(sentinel error, what, why string) error {
	if why == "" {
		return &wrapped{sentinel: sentinel, msg: what}
	}
	return &wrapped{sentinel: sentinel, msg: what + ": " + why}
}

// errorWithCause is sentinel with what happened, caused by cause: it matches both.
func errorWithCause(sentinel error, what string, cause error) error {
	return &wrapped{sentinel: sentinel, msg: what + ": " + strings.TrimPrefix(cause.Error(), "ftsl: "), cause: cause}
}

type wrapped struct {
	sentinel, cause error
	msg             string
}

func (w *wrapped) Error() string { return w.sentinel.Error() + ": " + w.msg }

func (w *wrapped) Unwrap() []error {
	if w.cause == nil {
		return []error{w.sentinel}
	}
	return []error{w.sentinel, w.cause}
}

// inContext wraps err, one of this package's or not, with what was being done, keeping a single
// "ftsl: " in front: "ftsl: dial host:7000: handshake rejected: server busy".
func inContext(what string, err error) error { return &contextError{what, err} }

type contextError struct {
	what string
	err  error
}

func (e *contextError) Error() string {
	return "ftsl: " + e.what + ": " + strings.TrimPrefix(e.err.Error(), "ftsl: ")
}

func (e *contextError) Unwrap() error { return e.err }
