package pubsub

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/rs/zerolog"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/events"
	"github.com/ftsl-go/ftsl/internal/ftslerr"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/pubsub/internal/subjects"
)

// HubConfig configures a Hub. The zero value is ready to use.
type HubConfig struct {
	// Session configures every client's session (buffers, timeouts, TLS). Its MaxMessageSize
	// (default 1 MiB) bounds a message, subject and headers included.
	Session oneway.Config

	// Authenticate decides who may connect and what each client may do, from what it presented
	// (ConnectInfo). It returns the client's permissions (nil: everything), or an error to refuse
	// it, whose text the client gets. It runs on the client's connection, which waits for it.
	// Default: everyone may connect and do everything.
	Authenticate func(ctx context.Context, c ConnectInfo) (*Permissions, error)

	// MaxSubscriptions bounds one client's subscriptions. Default 10,000.
	MaxSubscriptions int

	// MaxSubjectLength bounds a subject, pattern or queue name, in bytes. Default 256; at
	// least 64, the room of a client's inbox subjects (_INBOX.<id>.<request>).
	MaxSubjectLength int

	// SlowConsumers says what happens when a subscriber's session cannot take a message now:
	// SlowFail (the default) fails that subscriber's share of the publish at once, with
	// ErrSlowConsumer; SlowBlock makes the publisher wait up to MaxBlock for room first.
	SlowConsumers SlowPolicy

	// MaxBlock bounds the wait of SlowBlock. Default 100 ms.
	MaxBlock time.Duration

	// Events sizes the hub's event dispatcher.
	Events events.Config

	// Logger receives the hub's log. The zero value logs nothing.
	Logger zerolog.Logger
}

// SlowPolicy is what a hub does with a subscriber that cannot keep up.
type SlowPolicy uint8

// Slow-consumer policies.
const (
	// SlowFail fails the subscriber's share at once: the publisher never waits.
	SlowFail SlowPolicy = iota
	// SlowBlock makes the publisher wait up to MaxBlock for room, then fails the share.
	SlowBlock
)

// Defaults, as documented on the configs.
const (
	DefaultMaxSubscriptions = 10000
	DefaultMaxSubjectLength = subjects.DefaultMaxLength
	DefaultMaxBlock         = 100 * time.Millisecond
	DefaultMaxPending       = 256
	DefaultTimeout          = 10 * time.Second
	// DefaultClientInFlight is a client session's MaxInFlight unless its Config says: the
	// messages its subscriptions hold at once, all of them together.
	DefaultClientInFlight = 4096

	// minSubjectLength holds a client's inbox subjects: _INBOX., 24 hex digits, a dot and a
	// request's number in base 36 (up to 13 digits) make 45 bytes. Under it, the hub would refuse
	// every client's CONNECT (its inbox does not fit) as if it were not permitted.
	minSubjectLength = 64
)

func (c HubConfig) withDefaults() (HubConfig, error) {
	if c.MaxSubscriptions == 0 {
		c.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if c.MaxSubjectLength == 0 {
		c.MaxSubjectLength = DefaultMaxSubjectLength
	}
	if c.MaxBlock == 0 {
		c.MaxBlock = DefaultMaxBlock
	}
	if c.Session.Core.MaxMessageSize == 0 { // route checks messages against it
		c.Session.Core.MaxMessageSize = core.DefaultMaxMessageSize
	}
	switch {
	case c.MaxSubscriptions < 0:
		return c, ftslerr.Errorf("ftsl: invalid HubConfig: MaxSubscriptions %d", c.MaxSubscriptions)
	case c.MaxSubjectLength < minSubjectLength || c.MaxSubjectLength > 4096:
		return c, ftslerr.Errorf("ftsl: invalid HubConfig: MaxSubjectLength %d outside [%d, 4096]", c.MaxSubjectLength, minSubjectLength)
	case c.MaxBlock < 0:
		return c, ftslerr.Errorf("ftsl: invalid HubConfig: MaxBlock %v", c.MaxBlock)
	case c.SlowConsumers > SlowBlock:
		return c, ftslerr.Errorf("ftsl: invalid HubConfig: SlowConsumers %d", c.SlowConsumers)
	}
	return c, nil
}

// ConnectInfo is what a client presented when it connected, for HubConfig.Authenticate.
type ConnectInfo struct {
	Name string // what the client calls itself (Config.Name)
	Credential
	Addr net.Addr             // where it connected from
	TLS  *tls.ConnectionState // its TLS state, with its certificates under mutual TLS; nil without TLS
}

// Credential is what a client proves who it is with: a token, or a user and password.
type Credential struct {
	Token          string
	User, Password string
}

// Permissions say what one client may do. Patterns follow subject rules ("*" and ">" allowed).
// A nil *Permissions allows everything.
type Permissions struct {
	// Identity names the client to others: the publisher of its messages, the subscriber in
	// failures. Default: the user, else the name it connected with.
	Identity string
	// Publish and Subscribe list what it may publish to and subscribe to.
	Publish, Subscribe Rules
}

// Rules allow and deny subjects, as NATS permissions do: an empty Allow allows everything, and
// Deny wins. A wildcard subscription is allowed only if every subject it can match is; one that
// overlaps a denied pattern is allowed, and the denied subjects are not delivered to it.
type Rules struct {
	Allow, Deny []string
}

// Config configures a client. The zero value is ready to use.
type Config struct {
	// Session configures the client's session to the hub. Its MaxInFlight, unless set, is
	// DefaultClientInFlight: the messages all subscriptions hold at once, together.
	Session oneway.Config

	// Name is what the client calls itself; the hub shows it (or the authenticated identity) as
	// the publisher of its messages.
	Name string

	// Credential is presented to the hub's Authenticate.
	Credential Credential

	// NoEcho asks the hub never to send the client's own publishes to its own subscriptions (as
	// NATS's no_echo): a chat client does not want its lines back. Those subscriptions are not
	// matched: an outcome's Matched leaves them out; a queue group's message goes to another
	// member, or, if the client is its only member, the group is not matched. A Request that
	// only the client itself would answer fails with ErrNoResponders; answers from others reach
	// it as usual. Other clients get its publishes as usual. A hub older than this option
	// refuses a client that sets it. Default false: the client gets its own publishes.
	NoEcho bool

	// MaxPending bounds the messages waiting for one subscription's handler (or channel). While
	// it is full the client takes no more messages from the hub, and the hub then sees the
	// client as slow. Default 256.
	MaxPending int

	// Timeout bounds the waits that take no context: the hub's answer to Subscribe and
	// Unsubscribe. Default 10 s.
	Timeout time.Duration

	// MaxSubjectLength is checked before a subject goes to the hub. Default 256; at least 64.
	MaxSubjectLength int

	// Events sizes the client's event dispatcher.
	Events events.Config

	// Logger receives the client's log. The zero value logs nothing.
	Logger zerolog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Session.MaxInFlight == 0 && c.Session.Core.MaxInFlight == 0 {
		c.Session.MaxInFlight = DefaultClientInFlight
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxSubjectLength == 0 {
		c.MaxSubjectLength = DefaultMaxSubjectLength
	}
	switch {
	case c.MaxPending < 0:
		return c, ftslerr.Errorf("ftsl: invalid pubsub Config: MaxPending %d", c.MaxPending)
	case c.Timeout < 0:
		return c, ftslerr.Errorf("ftsl: invalid pubsub Config: Timeout %v", c.Timeout)
	case c.MaxSubjectLength < minSubjectLength:
		return c, ftslerr.Errorf("ftsl: invalid pubsub Config: MaxSubjectLength %d below %d", c.MaxSubjectLength, minSubjectLength)
	}
	return c, nil
}

// rules are a client's compiled permissions. nil fields allow everything.
type rules struct {
	identity   string
	pub, sub   *subjects.Rules
	maxSubject int
}

func compile(p *Permissions, maxLen int) (*rules, error) {
	r := &rules{maxSubject: maxLen}
	if p == nil {
		return r, nil
	}
	r.identity = p.Identity
	var err error
	if len(p.Publish.Allow)+len(p.Publish.Deny) > 0 {
		if r.pub, err = subjects.NewRules(p.Publish.Allow, p.Publish.Deny, maxLen); err != nil {
			return nil, fmt.Errorf("publish permissions: %w", err)
		}
	}
	if len(p.Subscribe.Allow)+len(p.Subscribe.Deny) > 0 {
		if r.sub, err = subjects.NewRules(p.Subscribe.Allow, p.Subscribe.Deny, maxLen); err != nil {
			return nil, fmt.Errorf("subscribe permissions: %w", err)
		}
	}
	return r, nil
}
