package core

import (
	"context"
	"crypto/tls"
	"math"
	"math/bits"
	"net"
	"time"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
	"github.com/rs/zerolog"
)

// Config tunes a session. The zero value is ready to use: every zero field means the default
// written beside it. Dial and Listen check the values and return an error for impossible ones.
// Dial uses the client fields, Listen the server fields; both use the rest.
type Config struct {
	// SendBufferBytes bounds the sent buffer: messages accepted by Send and not yet acknowledged
	// by the peer, counted with their 24-byte frame headers. Send blocks (TrySend fails) while a
	// message does not fit. Default 4 MiB; at least one message of MaxMessageSize; values above
	// 2^62 (1 GiB where int has 32 bits) are clamped to it. Both buffers take memory as they
	// fill, not up front, and give it back once emptied and idle for a heartbeat interval
	// (Stats.BufferMemory).
	SendBufferBytes int

	// ReceiveBufferBytes bounds the received buffer: messages received and not yet read by the
	// application. It is the credit window the peer may fill, so a slow reader never stalls acks
	// and heartbeats. Default 4 MiB; at least one message of MaxMessageSize; at most 1 GiB.
	ReceiveBufferBytes int

	// MaxInFlight bounds the received messages the application holds at once: returned by Recv
	// and not yet settled (Session.Settle). Recv waits while that many are held. Raise it to let
	// several goroutines process messages at once, in the spirit of JetStream's MaxAckPending;
	// the processed mark the sender sees still advances only over messages settled without a gap.
	// Default 1: one message at a time, settled before the next. At most 65,536.
	MaxInFlight int

	// MaxMessageSize is the largest message this side sends or accepts. The peer's own limit
	// also applies to what this side sends. Default 1 MiB.
	MaxMessageSize int

	// AckDelay is how long acknowledgements may wait for outgoing data to ride on before they
	// are sent alone. Default 2 ms. Acks that free much buffer space go out at once.
	AckDelay time.Duration

	// HeartbeatInterval is how long the session may write nothing before it sends a PING.
	// Default DeadPeerTimeout/3; it is also kept below a third of the peer's DeadPeerTimeout.
	HeartbeatInterval time.Duration

	// HeartbeatFloor is the shortest heartbeat interval the peer can make this side keep: a peer
	// advertising a dead-peer timeout under three times it is sent PINGs only this often (so a
	// stranger cannot make a server ping it hundreds of times a second). Default 100 ms, or
	// HeartbeatInterval if that is shorter.
	HeartbeatFloor time.Duration

	// DeadPeerTimeout is how long a connection may carry nothing from the peer before it is
	// declared dead and closed; the client then reconnects. Default 15 s.
	DeadPeerTimeout time.Duration

	// ResumeWindow is how long a session outlives its connection. The server forgets a detached
	// session after it; the client gives up reconnecting after it. Default 60 s.
	ResumeWindow time.Duration

	// HandshakeTimeout bounds each handshake, TLS included. Default 10 s.
	HandshakeTimeout time.Duration

	// FirstFrameTimeout bounds, on a Listener, the time from accepting a connection to reading
	// its first frame (HELLO or RESUME, the TLS handshake included): a legitimate client sends
	// it at once, so a connection that has not is idle or dribbling, and goes early. Default 3 s,
	// or HandshakeTimeout if that is shorter; never more than HandshakeTimeout.
	FirstFrameTimeout time.Duration

	// BackoffMin and BackoffMax bound the client's wait between reconnection attempts; the wait
	// doubles from BackoffMin to BackoffMax and each one is jittered. The first attempt after a
	// connection dies is made at once. Defaults 10 ms and 2 s.
	BackoffMin, BackoffMax time.Duration

	// MaxSendMemory bounds the memory the sent buffers of all a listener's sessions take
	// together (each is also bounded by SendBufferBytes). Sends that would grow a buffer past it
	// fail at once with ErrBufferFull, Send included (the memory is held by other sessions, and
	// waiting for it would not be fair), so peers that never read cannot pin more in total than
	// this, however many they are. Shared payloads (SendShared) count once, in the sender's
	// memory, not here. Server only. Default 1 GiB.
	MaxSendMemory int

	// MaxHandshakes bounds the handshakes a Listener runs at once. When all are taken, a new
	// connection takes the place of a handshake that has not sent its first frame yet (that one
	// is closed): the oldest of the source address holding the most places. If every handshake
	// has sent its first frame, the newcomer is refused as busy. Default 256.
	MaxHandshakes int

	// MaxHandshakesPerSource bounds the handshakes a Listener runs at once for one source IP
	// address, so one address cannot hold every place. Beyond it, a new connection takes the
	// place of that address's oldest handshake that has not sent its first frame yet, or is
	// refused as busy. Many clients can share an address (a carrier NAT), and each handshake is
	// short, hence the generous default: 64, or MaxHandshakes if that is smaller.
	MaxHandshakesPerSource int

	// AcceptBacklog bounds the new sessions waiting for Accept, counting those whose handshake
	// is under way; while it is full, new sessions are refused as busy. Default 128.
	AcceptBacklog int

	// MaxSessions bounds the sessions a Listener holds at once: connected ones, detached ones
	// waiting for their client to resume (for up to ResumeWindow), and new ones waiting for
	// Accept. Beyond it, new sessions are refused as busy; resumes of held sessions are not
	// affected. A detached session keeps only what a resume needs (its unacknowledged messages
	// and those the application has not finished with) and no goroutine; with nothing buffered
	// it costs about 3 KB of memory (BenchmarkDetachedSessions). Default 65,536.
	MaxSessions int

	// TLS, when set, wraps every connection in TLS: as a client with tls.Client (ServerName
	// defaults to the host being dialled), as a server with tls.Server.
	TLS *tls.Config

	// Logger receives the session's log. The zero value logs nothing.
	Logger zerolog.Logger

	// Resolver tells the client where the server is now, before every connection attempt.
	// Default: the address given to Dial, unchanged.
	Resolver Resolver

	// Dial opens the client's connections. Default: net.Dialer.DialContext. Tests use it to
	// inject faulty connections.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Resolver maps the name a client dialled to the address where the server is now. It is how a
// server moves: it rebinds its name, and clients ask again on every reconnection attempt.
type Resolver interface {
	Resolve(ctx context.Context, name string) (addr string, err error)
}

// WatchingResolver is a Resolver that also tells when the address of a name may have changed. A
// client waiting out its backoff before the next reconnection attempt tries again the moment
// that happens, so a server that moved is found as soon as its name is rebound, not at the
// client's next poll.
type WatchingResolver interface {
	Resolver
	// Changed returns a channel that is closed when the address of name changes after the
	// call; it may be closed already (if the name moved since some earlier Resolve). A session
	// asks for it just before each attempt's Resolve and waits on it while it backs off after
	// the attempt, so a move during the attempt wakes it even when another session sharing
	// the resolver has resolved the new address meanwhile.
	Changed(name string) <-chan struct{}
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(ctx context.Context, name string) (string, error)

// Resolve calls f.
func (f ResolverFunc) Resolve(ctx context.Context, name string) (string, error) { return f(ctx, name) }

type identityResolver struct{}

func (identityResolver) Resolve(_ context.Context, name string) (string, error) { return name, nil }

// Defaults, as documented on Config.
const (
	DefaultSendBufferBytes    = 4 << 20
	DefaultReceiveBufferBytes = 4 << 20
	DefaultMaxMessageSize     = 1 << 20
	DefaultAckDelay           = 2 * time.Millisecond
	DefaultDeadPeerTimeout    = 15 * time.Second
	DefaultHeartbeatFloor     = 100 * time.Millisecond
	DefaultResumeWindow       = 60 * time.Second
	DefaultHandshakeTimeout   = 10 * time.Second
	DefaultBackoffMin         = 10 * time.Millisecond
	DefaultBackoffMax         = 2 * time.Second
	DefaultMaxHandshakes      = 256
	DefaultAcceptBacklog      = 128
	DefaultMaxInFlight        = 1
	DefaultMaxSendMemory      = 1 << 30
	DefaultMaxSessions        = 1 << 16

	maxMaxInFlight = 1 << 16
	maxWindow      = 1 << 30
	minWindow      = 1024
	// maxSendBuffer is the largest power of two an int holds (2^30 or 2^62): the sent buffer's
	// ring grows to its bound rounded up to a power of two, and that must not overflow an int.
	maxSendBuffer = 1 << (bits.UintSize - 2)
	// maxPendingFailures bounds the FAIL reports a receiver keeps until the peer acknowledges
	// them; a receiver holds back further messages that ask for processing while it is full.
	maxPendingFailures = 64
)

// Defaults of the Listener's defences against strangers, as documented on Config.
const (
	DefaultFirstFrameTimeout      = 3 * time.Second
	DefaultMaxHandshakesPerSource = 64
)

// withDefaults returns c with every zero field set to its default, or an error naming the first
// field that cannot work.
func (c Config) withDefaults() (Config, error) {
	setDefault(&c.SendBufferBytes, DefaultSendBufferBytes)
	setDefault(&c.ReceiveBufferBytes, DefaultReceiveBufferBytes)
	setDefault(&c.MaxMessageSize, DefaultMaxMessageSize)
	setDefault(&c.AckDelay, DefaultAckDelay)
	setDefault(&c.DeadPeerTimeout, DefaultDeadPeerTimeout)
	setDefault(&c.HeartbeatInterval, c.DeadPeerTimeout/3)
	setDefault(&c.HeartbeatFloor, min(DefaultHeartbeatFloor, c.HeartbeatInterval))
	setDefault(&c.ResumeWindow, DefaultResumeWindow)
	setDefault(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	setDefault(&c.FirstFrameTimeout, min(DefaultFirstFrameTimeout, c.HandshakeTimeout))
	setDefault(&c.BackoffMin, DefaultBackoffMin)
	setDefault(&c.BackoffMax, DefaultBackoffMax)
	setDefault(&c.MaxHandshakes, DefaultMaxHandshakes)
	setDefault(&c.MaxHandshakesPerSource, min(DefaultMaxHandshakesPerSource, c.MaxHandshakes))
	setDefault(&c.AcceptBacklog, DefaultAcceptBacklog)
	setDefault(&c.MaxInFlight, DefaultMaxInFlight)
	setDefault(&c.MaxSendMemory, DefaultMaxSendMemory)
	setDefault(&c.MaxSessions, DefaultMaxSessions)
	c.SendBufferBytes = min(c.SendBufferBytes, maxSendBuffer)
	if c.Resolver == nil {
		c.Resolver = identityResolver{}
	}
	if c.Dial == nil {
		c.Dial = (&net.Dialer{}).DialContext
	}
	bad := func(format string, args ...any) (Config, error) {
		return c, ftslerr.Errorf("ftsl: invalid Config: "+format, args...)
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"SendBufferBytes", int64(c.SendBufferBytes)}, {"ReceiveBufferBytes", int64(c.ReceiveBufferBytes)},
		{"MaxMessageSize", int64(c.MaxMessageSize)}, {"AckDelay", int64(c.AckDelay)},
		{"HeartbeatInterval", int64(c.HeartbeatInterval)}, {"DeadPeerTimeout", int64(c.DeadPeerTimeout)},
		{"ResumeWindow", int64(c.ResumeWindow)}, {"HandshakeTimeout", int64(c.HandshakeTimeout)},
		{"BackoffMin", int64(c.BackoffMin)}, {"BackoffMax", int64(c.BackoffMax)},
		{"MaxHandshakes", int64(c.MaxHandshakes)}, {"AcceptBacklog", int64(c.AcceptBacklog)},
		{"MaxInFlight", int64(c.MaxInFlight)}, {"FirstFrameTimeout", int64(c.FirstFrameTimeout)},
		{"MaxHandshakesPerSource", int64(c.MaxHandshakesPerSource)}, {"MaxSessions", int64(c.MaxSessions)},
		{"HeartbeatFloor", int64(c.HeartbeatFloor)}, {"MaxSendMemory", int64(c.MaxSendMemory)},
	} {
		if f.v < 0 {
			return bad("%s is negative", f.name)
		}
	}
	switch {
	case c.MaxInFlight > maxMaxInFlight:
		return bad("MaxInFlight %d is above %d", c.MaxInFlight, maxMaxInFlight)
	case c.MaxMessageSize > maxWindow/2:
		return bad("MaxMessageSize %d is above %d", c.MaxMessageSize, maxWindow/2)
	case c.ReceiveBufferBytes > maxWindow:
		return bad("ReceiveBufferBytes %d is above %d", c.ReceiveBufferBytes, maxWindow)
	case uint64(c.ReceiveBufferBytes) < messageCost(c.MaxMessageSize)+dataHdrLen:
		return bad("ReceiveBufferBytes %d cannot hold a message of MaxMessageSize %d (needs %d)",
			c.ReceiveBufferBytes, c.MaxMessageSize, messageCost(c.MaxMessageSize)+dataHdrLen)
	case uint64(c.SendBufferBytes) < messageCost(c.MaxMessageSize)+dataHdrLen:
		return bad("SendBufferBytes %d cannot hold a message of MaxMessageSize %d (needs %d)",
			c.SendBufferBytes, c.MaxMessageSize, messageCost(c.MaxMessageSize)+dataHdrLen)
	case c.DeadPeerTimeout < 10*time.Millisecond:
		return bad("DeadPeerTimeout %v is below 10ms", c.DeadPeerTimeout)
	case c.DeadPeerTimeout > time.Duration(1<<32-1)*time.Millisecond:
		return bad("DeadPeerTimeout %v is too long", c.DeadPeerTimeout)
	case c.HeartbeatInterval >= c.DeadPeerTimeout:
		return bad("HeartbeatInterval %v must be below DeadPeerTimeout %v", c.HeartbeatInterval, c.DeadPeerTimeout)
	case c.BackoffMax < c.BackoffMin:
		return bad("BackoffMax %v is below BackoffMin %v", c.BackoffMax, c.BackoffMin)
	case c.FirstFrameTimeout > c.HandshakeTimeout:
		return bad("FirstFrameTimeout %v is above HandshakeTimeout %v", c.FirstFrameTimeout, c.HandshakeTimeout)
	case c.MaxHandshakesPerSource > c.MaxHandshakes:
		return bad("MaxHandshakesPerSource %d is above MaxHandshakes %d", c.MaxHandshakesPerSource, c.MaxHandshakes)
	}
	return c, nil
}

func setDefault[T int | time.Duration](v *T, d T) {
	if *v == 0 {
		*v = d
	}
}

// offer is what this side advertises in its handshake.
func (c *Config) offer() hello {
	return hello{
		vmin:       minVersion,
		vmax:       maxVersion,
		maxMessage: uint32(c.MaxMessageSize),
		window:     uint32(c.ReceiveBufferBytes),
		deadPeerMs: uint32(c.DeadPeerTimeout / time.Millisecond),
		// A u32 on the wire: the peer uses it only up to its own window (at most 1 GiB), so
		// clamping a larger buffer tells it all it needs.
		sendBuffer: uint32(min(uint64(c.SendBufferBytes), math.MaxUint32)),
	}
}
