package core

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"net"
	"slices"
	"time"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
)

// This file is the checkpoint of a server's sessions for a migration (the paper's section
// III-C). Listener.Pause freezes them, Listener.Export takes their state as plain values,
// and NewListenerFrom rebuilds them in another process, on another address, where their clients
// resume. Writing the values to a file is the snapshot package's business, not core's.

// ListenerState is the state of every session of a paused listener, as Listener.Export takes
// it and NewListenerFrom rebuilds it. It holds each session's secret resume token: keep it as
// secret as the server process's memory.
type ListenerState struct {
	Sessions []SessionState
}

// SessionState is one server session's protocol state: enough to rebuild it elsewhere with
// every guarantee intact. Its fields mirror PROTOCOL.md's names.
type SessionState struct {
	ID    uint64
	Token [tokenLen]byte
	// Accepted reports that the application had taken the session from Accept. NewListenerFrom
	// returns the accepted sessions; the others come out of the new listener's Accept once
	// their client has resumed there (which proves that the client has the session).
	Accepted bool
	Params   SessionParams
	Send     SendState
	Recv     RecvState
	// CloseRequested: Close was called; the session sends CLOSE once the peer acknowledged
	// everything it sent.
	CloseRequested bool
	// PeerClosing: the peer sent CLOSE; the session answers CLOSED once drained.
	PeerClosing bool
	Stats       SessionStats
}

// SessionParams is what the handshake settled. It binds the session for its whole life,
// whatever the importing listener's Config says: the peer was told these values.
type SessionParams struct {
	Version uint8 // the protocol version chosen
	// This side's limits, as the peer was told them (Config fields of the same names).
	MaxMessageSize     int
	ReceiveBufferBytes int
	SendBufferBytes    int
	DeadPeerTimeout    time.Duration
	// The peer's, as it offered them in its HELLO.
	PeerMaxMessageSize     uint32
	PeerReceiveBufferBytes uint32
	PeerSendBufferBytes    uint32
	PeerDeadPeerTimeout    time.Duration // whole milliseconds
}

// SendState is what the session sent and the peer has not acknowledged, and how far the peer
// got.
type SendState struct {
	// Frames holds the DATA frames the peer has not acknowledged, back to back, exactly as they
	// go on the wire without ack block (PROTOCOL.md, DATA). The last one ends a message: Export
	// cancels a message that a MessageWriter left open.
	Frames      []byte
	FirstPID    uint64 // the first frame's PID; the peer acknowledged every one before it
	FirstOffset uint64 // the first frame's cost offset: the cost of every frame before it
	NextPID     uint64 // the PID the next frame gets
	NextMID     uint64 // the MID the next message gets
	PeerAck     AckState
	AckedMID    uint64 // the last message whose frames the peer has all (Progress.Acked)
}

// AckState is an ack block (PROTOCOL.md): what the peer reported receiving, merged field by
// field.
type AckState struct {
	RPID, DMID, PMID, FAck, Credit uint64
}

// RecvState is what the session received and the application has not finished with.
type RecvState struct {
	RPID         uint64 // the last packet received, in order
	Cost         uint64 // the cost of every DATA frame received
	ReleasedCost uint64 // the cost of the messages released; the credit granted is this plus the window
	// Released is the last message that was settled with every one before it: Messages holds
	// those after it, complete, in order.
	Released uint64
	Messages []ReceivedMessage
	// Partial is a message whose first frames arrived (rPID covers them, so the peer will not
	// send them again) and whose last has not.
	Partial     *PartialMessage
	Fails       []FailReport // this side's FAIL reports the peer has not acknowledged, in order
	NextFailSeq uint64       // the sequence number of the next FAIL report
	PeerFailSeq uint64       // the last of the peer's FAIL reports received
	MaxInFlight int          // Session.SetMaxInFlight's value
}

// ReceivedMessage is one complete message in the received buffer.
type ReceivedMessage struct {
	ID        uint64
	Data      []byte // nil once Settled
	Level     AckLevel
	Resent    bool
	Cancelled bool   // the sender abandoned it: nobody sees it
	Cost      uint64 // the credit its frames used
	// Delivered: Recv handed it out (dMID covers it). A message delivered and not settled
	// comes out of Recv again after the import, as after Requeue, with the same ID.
	Delivered bool
	// Settled: Settle was called (or it was cancelled and passed over); its bytes are free,
	// and it waits only for the messages before it to be settled too.
	Settled bool
}

// PartialMessage is the received part of a message: its frames that arrived, joined.
type PartialMessage struct {
	ID     uint64
	Data   []byte
	Level  AckLevel
	Resent bool
	Cost   uint64
}

// FailReport is a FAIL frame's content: the application failed message MID for good.
type FailReport struct {
	Seq    uint64
	MID    uint64
	Reason string
}

// SessionStats are the counters of Stats that carry over; the others are measured afresh.
type SessionStats struct {
	MessagesSent, MessagesReceived uint64
	BytesSent, BytesReceived       uint64
	FramesResent                   uint64
	Reconnects                     uint64
}

// errPaused closes the connections a pause cuts.
var errPaused = errors.New("ftsl: connection cut: the listener paused for a migration")

// Export takes the state of every session of the paused listener (see Pause), for
// NewListenerFrom to rebuild in another process, and marks the sessions moved: from then on
// their calls fail with ErrSessionMoved, their observers hear StateMoved (after every note made
// before it), and the listener forgets them, so closing it afterwards tells their peers
// nothing and they resume where the state is imported. Whatever the application did to a
// session before Export is in the state; a MessageWriter still open is cancelled (the peer
// never sees its message, and the writer's next call fails with ErrSessionMoved). Until the
// listener is closed, it answers resumes with RejectMoving, and clients keep asking their
// Resolver. Export fails with ErrNotPaused unless Pause completed, and with ErrSessionMoved
// the second time.
func (l *Listener) Export() (ListenerState, error) {
	l.moveMu.Lock()
	defer l.moveMu.Unlock()
	l.mu.Lock()
	switch l.phase {
	case phasePaused:
	case phaseExported:
		l.mu.Unlock()
		return ListenerState{}, ftslerr.Errorf("ftsl: export: already taken: %w", ErrSessionMoved)
	default:
		l.mu.Unlock()
		return ListenerState{}, ftslerr.Errorf("ftsl: export: %w", ErrNotPaused)
	}
	l.phase = phaseExported
	sessions := l.sessionsLocked()
	l.mu.Unlock()
	slices.SortFunc(sessions, func(a, b *Session) int { return cmp.Compare(a.id, b.id) })
	st := ListenerState{Sessions: make([]SessionState, 0, len(sessions))}
	moved := errorWithReason(ErrSessionMoved, "exported by its listener", "")
	for _, s := range sessions {
		s.mu.Lock()
		if s.state.ended() {
			s.mu.Unlock()
			continue
		}
		st.Sessions = append(st.Sessions, s.exportLocked())
		s.discard = true // its messages moved with it: Recv here would hand them out twice
		s.endLocked(StateMoved, moved, endDrop, "")
		s.unlockNotify()
	}
	return st, nil
}

// NewListenerFrom rebuilds the sessions of st (taken by Export, maybe in another process) in a
// listener on connections from ln. The listener starts paused, as if Pause had returned: it
// answers resumes with RejectMoving and new sessions as busy, so the layers above can wrap the
// sessions again (Session.Observe) before anything happens to them. Continue then serves: every
// session waits, detached, for its client to resume, for ResumeWindow from then. Export may also
// take the state again, untouched.
//
// NewListenerFrom returns the sessions the exporting application had accepted, in st's order;
// the others come out of Accept once their client has resumed. Each session keeps the
// parameters its handshake settled (SessionParams); cfg gives the rest. A state that is corrupt
// or inconsistent is refused with an error matching ErrInvalidState and naming what is wrong,
// and nothing is imported. On error ln is left open.
func NewListenerFrom(ln net.Listener, cfg Config, st ListenerState) (*Listener, []*Session, error) {
	l, err := newListener(ln, cfg)
	if err != nil {
		return nil, nil, err
	}
	invalid := func(format string, args ...any) error {
		l.cancel()
		return ftslerr.Errorf("ftsl: import: %w: "+format, append([]any{ErrInvalidState}, args...)...)
	}
	if len(st.Sessions) > l.cfg.MaxSessions {
		return nil, nil, invalid("%d sessions, above MaxSessions %d", len(st.Sessions), l.cfg.MaxSessions)
	}
	sessions := make([]*Session, 0, len(st.Sessions))
	pending := 0
	for i := range st.Sessions {
		ss := &st.Sessions[i]
		if _, dup := l.sessions[ss.ID]; dup {
			return nil, nil, invalid("session %d appears twice", ss.ID)
		}
		s, err := importSession(l.cfg, ss)
		if err != nil {
			l.cancel()
			return nil, nil, ftslerr.Errorf("ftsl: import: %w", err)
		}
		l.sessions[s.id] = s
		sessions = append(sessions, s)
		if !ss.Accepted {
			pending++
		}
	}
	if pending > l.cfg.AcceptBacklog {
		return nil, nil, invalid("%d sessions wait to be accepted, above AcceptBacklog %d", pending, l.cfg.AcceptBacklog)
	}
	var accepted []*Session
	for _, s := range sessions {
		s.lis = l
		if s.accepted {
			accepted = append(accepted, s)
		} else {
			l.backlog <- struct{}{} // room was checked above
			s.acceptOnResume = true
		}
		// Paused as Pause leaves a session: no resume window runs until Continue.
		s.paused, s.resumeBusy = true, true
	}
	l.phase = phasePaused
	close(l.pausing)
	l.start()
	return l, accepted, nil
}

// pause cuts the session's connection for a listener pause without a word to the peer, as a
// network failure would, and stops its resume window until unpause. It returns the link whose
// goroutines are to return, if there is one.
func (s *Session) pause() *link {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.ended() {
		return nil
	}
	if !s.paused {
		s.paused = true
		// A busy session does not expire (expire), and linkGone arms no window for it.
		s.resumeBusy = true
		if s.expiry != nil {
			s.expiry.Stop()
			s.expiry = nil
		}
	}
	l := s.link // still there if an earlier Pause gave up waiting for it
	if l != nil {
		l.fail(errPaused)
	}
	return l
}

// unpause undoes pause: a detached session waits a whole ResumeWindow for its client from now.
func (s *Session) unpause() {
	s.mu.Lock()
	if s.paused {
		s.paused = false
		s.mu.Unlock()
		s.rearmExpiry()
		return
	}
	s.mu.Unlock()
}

// exportLocked takes the session's state. The caller marks it moved next: exportLocked may
// change it on the way (it frees acknowledged frames, cancels an open MessageWriter).
func (s *Session) exportLocked() SessionState {
	if s.streamOpen {
		// Nobody would finish the message where the session goes: abandon it, as Cancel does.
		s.appendFrameLocked(dataFlagsFor(s.streamLevel, true)|flagCancel, s.nextMID-1, nil, nil, false)
		s.streamOpen = false
	}
	// No write is under way any more (as on a resume): every frame acknowledged can go, so the
	// state has one form, FirstPID = PeerAck.RPID+1.
	s.sentOff = max(s.sentOff, s.highOff)
	s.freeAckedLocked()
	p := s.peerOffer
	st := SessionState{
		ID:       s.id,
		Token:    s.token,
		Accepted: s.accepted,
		Params: SessionParams{
			Version:                s.peer.version,
			MaxMessageSize:         s.cfg.MaxMessageSize,
			ReceiveBufferBytes:     s.cfg.ReceiveBufferBytes,
			SendBufferBytes:        s.cfg.SendBufferBytes,
			DeadPeerTimeout:        s.cfg.DeadPeerTimeout,
			PeerMaxMessageSize:     p.maxMessage,
			PeerReceiveBufferBytes: p.window,
			PeerSendBufferBytes:    p.sendBuffer,
			PeerDeadPeerTimeout:    time.Duration(p.deadPeerMs) * time.Millisecond,
		},
		Send: SendState{
			Frames:      s.sentFramesLocked(),
			FirstPID:    s.sHeadPID,
			FirstOffset: s.costAtLocked(s.sHead), // imported frames are all copied: ring and cost offsets agree
			NextPID:     s.nextPID,
			NextMID:     s.nextMID,
			PeerAck:     exportAck(s.peerAck),
			AckedMID:    s.ackedMID,
		},
		CloseRequested: s.closing.local(),
		PeerClosing:    s.closing == peerClosing || s.closing == bothWanted || s.closing == bothSent,
		Stats: SessionStats{
			MessagesSent: s.stats.MessagesSent, MessagesReceived: s.stats.MessagesReceived,
			BytesSent: s.stats.BytesSent, BytesReceived: s.stats.BytesReceived,
			FramesResent: s.stats.FramesResent, Reconnects: s.stats.Reconnects,
		},
	}
	r := &st.Recv
	r.RPID, r.Cost, r.ReleasedCost, r.Released = s.rPID, s.recvCost, s.releasedCost, s.dRel
	r.NextFailSeq, r.PeerFailSeq, r.MaxInFlight = s.nextFSeq, s.peerFSeq, s.maxInFlight
	mask := uint64(len(s.descs) - 1)
	off := s.rHead
	for k := s.dRel; k < s.dDone; k++ {
		d := s.descs[k&mask]
		m := ReceivedMessage{
			ID: k + 1, Level: AckLevel(d.flags&levelMask) >> levelShift, Cost: uint64(d.cost),
			Resent: d.flags&recResent != 0, Cancelled: d.flags&recCancelled != 0,
			Delivered: k < s.dTake, Settled: d.flags&recReleased != 0,
		}
		if !m.Settled {
			m.Data = ringCopy(&s.rbuf, off, uint64(d.n))
		}
		off += uint64(d.n)
		r.Messages = append(r.Messages, m)
	}
	// The reader has returned, and published all it read: its state and the session's agree.
	if rd := &s.rd; rd.inMsg {
		r.Partial = &PartialMessage{
			ID: rd.recMID, Level: AckLevel(rd.recFlags&levelMask) >> levelShift,
			Resent: rd.recFlags&flagResent != 0, Cost: rd.recCost,
			Data: ringCopy(&rd.ring, rd.recStart, rd.tail-rd.recStart),
		}
	}
	for _, f := range s.fails {
		r.Fails = append(r.Fails, FailReport{Seq: f.seq, MID: f.mid, Reason: f.reason})
	}
	return st
}

// sentFramesLocked returns a copy of the sent buffer: the frames from sHead to sTail, PIDs from
// sHeadPID on, back to back as they go on the wire without ack block. It is the one place
// outside the send path that reads how the sent buffer stores frames; importSession writes
// them back through appendFrameLocked.
func (s *Session) sentFramesLocked() []byte {
	if s.sTail == s.sHead {
		return nil
	}
	out := make([]byte, 0, s.bufferedLocked())
	var scratch [dataHdrLen]byte
	for off := s.sHead; off < s.sTail; {
		h := s.headerAtLocked(off, &scratch)
		n := len(out)
		out = append(out, make([]byte, h.keptLen())...)
		s.sbuf.get(off, out[n:])
		if h.external() {
			dataHdr(out[n:]).clearKeptMarks() // the frame as it goes on the wire, its payload after it
			out = append(out, s.ext[s.extAfterLocked(off)].data...)
		}
		off += h.keptLen()
	}
	return out
}

// ringCopy returns a copy of the n bytes at off in r, or nil if n is 0.
func ringCopy(r *ring, off, n uint64) []byte {
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	r.get(off, b)
	return b
}

// sentFrame is one frame of SendState.Frames, parsed.
type sentFrame struct {
	flags   uint8
	mid     uint64
	payload []byte
}

// importSession checks ss against itself and builds the session it describes, detached and
// belonging to no listener yet. cfg is the importing listener's, with defaults.
func importSession(cfg Config, ss *SessionState) (*Session, error) {
	bad := func(format string, args ...any) error {
		return ftslerr.Errorf("%w: session %d: "+format, append([]any{ErrInvalidState, ss.ID}, args...)...)
	}
	if ss.ID == 0 {
		return nil, bad("ID is 0")
	}
	if ss.Token == [tokenLen]byte{} {
		return nil, bad("Token is all zero")
	}
	scfg, offer, err := ss.Params.config(cfg)
	if err != nil {
		return nil, bad("%v", err)
	}
	frames, err := ss.Send.check(scfg)
	if err != nil {
		return nil, bad("%v", err)
	}
	if err := ss.Recv.check(scfg, ss.Send.PeerAck.FAck); err != nil {
		return nil, bad("%v", err)
	}

	s := newSession(&scfg, false)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.id, s.token, s.accepted = ss.ID, ss.Token, ss.Accepted
	s.setPeer(ss.Params.Version, offer)
	s.state = StateDisconnected
	if ss.CloseRequested || ss.PeerClosing {
		s.state = StateClosing
	}
	switch {
	case ss.CloseRequested && ss.PeerClosing:
		s.closing = bothWanted
	case ss.CloseRequested:
		s.closing = closeWanted
	case ss.PeerClosing:
		s.closing = peerClosing
	}
	st := ss.Stats
	s.stats = Stats{MessagesSent: st.MessagesSent, MessagesReceived: st.MessagesReceived, BytesSent: st.BytesSent,
		BytesReceived: st.BytesReceived, FramesResent: st.FramesResent, Reconnects: st.Reconnects}

	// Send side: the frames go back through the send path's own append.
	snd := &ss.Send
	s.sHead, s.sTail = snd.FirstOffset, snd.FirstOffset
	s.sHeadPID, s.nextPID = snd.FirstPID, snd.FirstPID
	for _, f := range frames {
		s.appendFrameLocked(f.flags, f.mid, nil, f.payload, false)
	}
	s.nextMID = snd.NextMID
	s.writeOff, s.sentOff = s.sHead, s.sHead
	// Any of them may have gone out before the move: the first resume marks them resent.
	s.highOff = s.sTail
	s.peerAck = importAck(snd.PeerAck)
	s.ackedMID = snd.AckedMID

	// Receive side: the messages lie from offset 0 in a ring that holds them all, so none
	// straddles its end.
	rcv := &ss.Recv
	total := 0
	for _, m := range rcv.Messages {
		total += len(m.Data)
	}
	if rcv.Partial != nil {
		total += len(rcv.Partial.Data)
	}
	if total > 0 {
		s.rbuf.ensure(0, 0, total)
	}
	if n := len(rcv.Messages); n > 0 {
		s.descs = make([]recDesc, max(minDescs, 1<<bits.Len(uint(n-1))))
	}
	mask := uint64(len(s.descs) - 1)
	s.dRel, s.dTake = rcv.Released, rcv.Released
	off := uint64(0)
	for i, m := range rcv.Messages {
		k := rcv.Released + uint64(i)
		flags := uint8(m.Level) << levelShift
		if m.Resent {
			flags |= recResent
		}
		if m.Cancelled {
			flags |= recCancelled
		}
		n := uint64(len(m.Data))
		if n > 0 {
			s.rbuf.put(off, m.Data)
		}
		if m.Delivered {
			s.dTake = k + 1
			switch {
			case m.Settled:
				flags |= recSettled | recReleased
			case m.Level != AckProcessed:
				flags |= recSettled
			}
			if !m.Settled {
				// Held by the application that exported it: it comes out of Recv again first.
				s.held++
				s.requeued = append(s.requeued, Message{ID: k + 1, Data: s.rbuf.buf[off : off+n : off+n],
					Level: m.Level, Resent: m.Resent})
			}
		}
		s.descs[k&mask] = recDesc{n: uint32(n), cost: uint32(m.Cost), flags: flags}
		off += n
	}
	s.dDone = rcv.Released + uint64(len(rcv.Messages))
	s.dSettle = s.dRel
	for s.dSettle < s.dTake && s.descs[s.dSettle&mask].flags&recSettled != 0 {
		s.dSettle++
	}
	s.rHead, s.rDone = 0, off
	s.rTake = 0
	for k := s.dRel; k < s.dTake; k++ {
		s.rTake += uint64(s.descs[k&mask].n)
	}
	s.rPID, s.recvCost, s.releasedCost = rcv.RPID, rcv.Cost, rcv.ReleasedCost
	s.maxInFlight = rcv.MaxInFlight
	for _, f := range rcv.Fails {
		s.fails = append(s.fails, failReport{seq: f.Seq, mid: f.MID, reason: f.Reason})
	}
	s.nextFSeq, s.peerFSeq = rcv.NextFailSeq, rcv.PeerFailSeq

	rd := &s.rd
	rd.ring, rd.descs = s.rbuf, s.descs
	rd.done, rd.dTail = s.rDone, s.dDone
	rd.rPID, rd.recvCost, rd.fSeq = s.rPID, s.recvCost, s.peerFSeq
	rd.lastMID = s.dDone
	rd.tail = s.rDone
	if p := rcv.Partial; p != nil {
		if len(p.Data) > 0 {
			s.rbuf.put(off, p.Data)
		}
		rd.inMsg = true
		rd.recStart, rd.recLen, rd.recCost = off, uint64(len(p.Data)), p.Cost
		rd.recMID, rd.lastMID = p.ID, p.ID
		rd.recFlags = uint8(p.Level) << levelShift
		if p.Resent {
			rd.recFlags |= flagResent
		}
		rd.tail += uint64(len(p.Data))
	}
	rd.restart()
	s.refreshViewLocked()
	return s, nil
}

// config returns the session's own Config: cfg with the limits the peer was told, and the
// peer's offer. It refuses parameters no session could have settled.
func (p SessionParams) config(cfg Config) (Config, hello, error) {
	switch {
	case p.Version < minVersion || p.Version > maxVersion:
		return cfg, hello{}, fmt.Errorf("Params.Version %d: this side speaks [%d, %d]", p.Version, minVersion, maxVersion)
	case p.MaxMessageSize <= 0:
		return cfg, hello{}, fmt.Errorf("Params.MaxMessageSize %d is not positive", p.MaxMessageSize)
	case p.ReceiveBufferBytes <= 0:
		return cfg, hello{}, fmt.Errorf("Params.ReceiveBufferBytes %d is not positive", p.ReceiveBufferBytes)
	case p.SendBufferBytes <= 0 || p.SendBufferBytes > maxSendBuffer:
		return cfg, hello{}, fmt.Errorf("Params.SendBufferBytes %d is outside [1, %d]", p.SendBufferBytes, maxSendBuffer)
	case p.DeadPeerTimeout <= 0:
		return cfg, hello{}, fmt.Errorf("Params.DeadPeerTimeout %v is not positive", p.DeadPeerTimeout)
	case p.PeerDeadPeerTimeout%time.Millisecond != 0 || p.PeerDeadPeerTimeout < 0 ||
		p.PeerDeadPeerTimeout/time.Millisecond > math.MaxUint32:
		return cfg, hello{}, fmt.Errorf("Params.PeerDeadPeerTimeout %v is not a u32 of milliseconds", p.PeerDeadPeerTimeout)
	}
	cfg.MaxMessageSize, cfg.ReceiveBufferBytes = p.MaxMessageSize, p.ReceiveBufferBytes
	cfg.SendBufferBytes, cfg.DeadPeerTimeout = p.SendBufferBytes, p.DeadPeerTimeout
	if cfg.HeartbeatInterval >= cfg.DeadPeerTimeout {
		cfg.HeartbeatInterval = cfg.DeadPeerTimeout / 3
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return cfg, hello{}, fmt.Errorf("Params: %v", err)
	}
	h := hello{vmin: p.Version, vmax: p.Version, maxMessage: p.PeerMaxMessageSize, window: p.PeerReceiveBufferBytes,
		deadPeerMs: uint32(p.PeerDeadPeerTimeout / time.Millisecond), sendBuffer: p.PeerSendBufferBytes}
	if err := h.check(); err != nil {
		return cfg, hello{}, fmt.Errorf("Params: the peer's offer: %v", err)
	}
	return cfg, h, nil
}

// check checks the send side against itself and returns its frames, parsed.
func (snd *SendState) check(cfg Config) ([]sentFrame, error) {
	a := snd.PeerAck
	switch {
	case snd.FirstPID == 0:
		return nil, errors.New("Send.FirstPID is 0")
	case a.RPID != snd.FirstPID-1:
		return nil, fmt.Errorf("Send.PeerAck.RPID %d: the frames kept start at PID %d", a.RPID, snd.FirstPID)
	case snd.FirstPID-1 > snd.FirstOffset/dataHdrLen:
		return nil, fmt.Errorf("Send.FirstOffset %d is less than %d frames cost", snd.FirstOffset, snd.FirstPID-1)
	case uint64(len(snd.Frames)) > uint64(cfg.SendBufferBytes)+2*dataHdrLen:
		// A cancel may overshoot the bound by a frame header, an export's cancel by another.
		return nil, fmt.Errorf("Send.Frames holds %d bytes, above SendBufferBytes %d", len(snd.Frames), cfg.SendBufferBytes)
	case snd.FirstOffset > math.MaxUint64-uint64(len(snd.Frames)):
		return nil, fmt.Errorf("Send.FirstOffset %d overflows", snd.FirstOffset)
	case a.Credit < snd.FirstOffset:
		return nil, fmt.Errorf("Send.PeerAck.Credit %d is below the frames already sent (%d)", a.Credit, snd.FirstOffset)
	case a.PMID > a.DMID || a.DMID > snd.AckedMID:
		return nil, fmt.Errorf("Send.PeerAck: processed %d, delivered %d, acknowledged %d do not nest", a.PMID, a.DMID, snd.AckedMID)
	}
	var frames []sentFrame
	b := snd.Frames
	// The first frame may continue a message whose first frames were acknowledged already.
	pid, mid, inMsg := snd.FirstPID, snd.AckedMID+1, false
	var level uint8
	for len(b) > 0 {
		if len(b) < dataHdrLen {
			return nil, fmt.Errorf("Send.Frames: %d bytes left, a DATA header needs %d", len(b), dataHdrLen)
		}
		h, err := parseHeader(b)
		if err != nil {
			return nil, fmt.Errorf("Send.Frames: packet %d: %v", pid, err)
		}
		if h.typ != frameData || h.flags&flagAcks != 0 || uint64(len(b)) < headerLen+uint64(h.length) {
			return nil, fmt.Errorf("Send.Frames: packet %d is not a whole DATA frame without ack block", pid)
		}
		d := dataHeader{flags: h.flags, n: h.dataPayloadLen(),
			pid: binary.BigEndian.Uint64(b[8:16]), mid: binary.BigEndian.Uint64(b[16:24])}
		switch {
		case d.pid != pid:
			return nil, fmt.Errorf("Send.Frames: packet %d where %d belongs", d.pid, pid)
		case d.mid != mid:
			return nil, fmt.Errorf("Send.Frames: packet %d is of message %d, expected %d", pid, d.mid, mid)
		case inMsg && d.flags&levelMask != level:
			return nil, fmt.Errorf("Send.Frames: packet %d changes the level of message %d", pid, mid)
		}
		level, inMsg = d.flags&levelMask, d.flags&flagEOM == 0
		if !inMsg {
			mid++
		}
		frames = append(frames, sentFrame{flags: d.flags, mid: d.mid, payload: b[dataHdrLen : dataHdrLen+d.n]})
		b = b[dataHdrLen+d.n:]
		pid++
	}
	switch {
	case inMsg:
		return nil, fmt.Errorf("Send.Frames: message %d has no last frame", mid)
	case snd.NextPID != pid:
		return nil, fmt.Errorf("Send.NextPID %d: the frames end at PID %d", snd.NextPID, pid-1)
	case snd.NextMID != mid:
		return nil, fmt.Errorf("Send.NextMID %d: the frames end with message %d", snd.NextMID, mid-1)
	}
	return frames, nil
}

// check checks the receive side against itself and the session's limits; fAck is the last of
// this side's FAIL reports the peer acknowledged.
func (r *RecvState) check(cfg Config, fAck uint64) error {
	n := uint64(len(r.Messages))
	if r.MaxInFlight < 1 || r.MaxInFlight > maxMaxInFlight {
		return fmt.Errorf("Recv.MaxInFlight %d is outside [1, %d]", r.MaxInFlight, maxMaxInFlight)
	}
	if r.Released > math.MaxUint64-n-2 {
		return fmt.Errorf("Recv.Released %d overflows", r.Released)
	}
	sum, frames := r.ReleasedCost, r.Released // every message released had a frame at least
	add := func(c uint64) bool {
		s, carry := bits.Add64(sum, c, 0)
		sum = s
		return carry == 0
	}
	delivered := r.Released
	for i := range r.Messages {
		m := &r.Messages[i]
		id := r.Released + 1 + uint64(i)
		what := fmt.Sprintf("Recv.Messages[%d]", i)
		switch {
		case m.ID != id:
			return fmt.Errorf("%s has ID %d, expected %d", what, m.ID, id)
		case m.Level > AckProcessed:
			return fmt.Errorf("%s: level %d", what, m.Level)
		case m.Cost < dataHdrLen || m.Cost > math.MaxUint32:
			return fmt.Errorf("%s: cost %d", what, m.Cost)
		case m.Delivered && delivered != id-1:
			return fmt.Errorf("%s is delivered after an undelivered message", what)
		case m.Settled && !m.Delivered:
			return fmt.Errorf("%s is settled but not delivered", what)
		case m.Settled && i == 0:
			return fmt.Errorf("%s is settled, so Released should cover it", what)
		case (m.Settled || m.Cancelled) && len(m.Data) > 0:
			return fmt.Errorf("%s is settled or cancelled but carries data", what)
		case m.Cancelled && m.Delivered && !m.Settled:
			return fmt.Errorf("%s is cancelled and delivered but not settled", what)
		case !m.Settled && !m.Cancelled:
			if err := checkChunks(cfg, len(m.Data), m.Cost); err != nil {
				return fmt.Errorf("%s: %v", what, err)
			}
		}
		if m.Delivered {
			delivered = id
		}
		if !add(m.Cost) {
			return fmt.Errorf("%s: cost overflows", what)
		}
		frames++
	}
	if p := r.Partial; p != nil {
		switch {
		case p.ID != r.Released+n+1:
			return fmt.Errorf("Recv.Partial has ID %d, expected %d", p.ID, r.Released+n+1)
		case p.Level > AckProcessed:
			return fmt.Errorf("Recv.Partial: level %d", p.Level)
		case p.Cost > math.MaxUint32:
			return fmt.Errorf("Recv.Partial: cost %d", p.Cost)
		}
		if err := checkChunks(cfg, len(p.Data), p.Cost); err != nil {
			return fmt.Errorf("Recv.Partial: %v", err)
		}
		if !add(p.Cost) {
			return errors.New("Recv.Partial: cost overflows")
		}
		frames++
	}
	switch {
	case sum != r.Cost:
		return fmt.Errorf("Recv.Cost %d is not ReleasedCost plus the messages' costs (%d)", r.Cost, sum)
	case r.Cost-r.ReleasedCost > uint64(cfg.ReceiveBufferBytes):
		return fmt.Errorf("Recv: %d bytes of credit used, above the window %d", r.Cost-r.ReleasedCost, cfg.ReceiveBufferBytes)
	case r.RPID < frames:
		return fmt.Errorf("Recv.RPID %d is below the %d packets the messages took at least", r.RPID, frames)
	case uint64(len(r.Fails)) > maxPendingFailures+maxMaxInFlight:
		return fmt.Errorf("Recv.Fails holds %d reports", len(r.Fails))
	case fAck > math.MaxUint64-uint64(len(r.Fails))-1 || r.NextFailSeq != fAck+1+uint64(len(r.Fails)):
		return fmt.Errorf("Recv.NextFailSeq %d: the peer acknowledged %d and %d are pending", r.NextFailSeq, fAck, len(r.Fails))
	}
	for i, f := range r.Fails {
		switch {
		case f.Seq != fAck+1+uint64(i):
			return fmt.Errorf("Recv.Fails[%d] has sequence %d, expected %d", i, f.Seq, fAck+1+uint64(i))
		case f.MID == 0 || f.MID > delivered:
			return fmt.Errorf("Recv.Fails[%d] is for message %d, not one delivered", i, f.MID)
		case len(f.Reason) > maxReasonLen:
			return fmt.Errorf("Recv.Fails[%d]: reason of %d bytes, above %d", i, len(f.Reason), maxReasonLen)
		}
	}
	return nil
}

// checkChunks checks that a message of n bytes received so far could have cost cost: whole
// frames of at most MaxFramePayload bytes each, within MaxMessageSize.
func checkChunks(cfg Config, n int, cost uint64) error {
	if n > cfg.MaxMessageSize {
		return fmt.Errorf("%d bytes, above MaxMessageSize %d", n, cfg.MaxMessageSize)
	}
	if cost < uint64(n)+dataHdrLen || (cost-uint64(n))%dataHdrLen != 0 ||
		uint64(n) > (cost-uint64(n))/dataHdrLen*MaxFramePayload {
		return fmt.Errorf("%d bytes cannot have cost %d in whole frames", n, cost)
	}
	return nil
}

func exportAck(a ackBlock) AckState {
	return AckState{RPID: a.rPID, DMID: a.dMID, PMID: a.pMID, FAck: a.fAck, Credit: a.credit}
}

func importAck(a AckState) ackBlock {
	return ackBlock{rPID: a.RPID, dMID: a.DMID, pMID: a.PMID, fAck: a.FAck, credit: a.Credit}
}
