package core

import (
	"sync/atomic"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
)

// The sent buffer keeps the DATA frames sent and not yet acknowledged, exactly as they go on the
// wire (without ack block), so a connection that breaks costs only a resend from the peer's
// resume point. Its state is Session.sbuf and the fields beside it, guarded by Session.mu.
//
// Offsets (sHead, sTail, writeOff, sentOff, highOff) are ring offsets: they only grow. Credit is
// counted in cost (PROTOCOL.md: a frame with n payload bytes costs 24+n). The two are the same
// numbers but for shared payloads: a frame sent with SendShared keeps only its header in the
// ring, marked sentExternal, and its payload in s.ext, so one payload fanned out to many sessions
// is stored once. The cost of a ring offset is then the offset plus the external payload bytes
// before it (costAtLocked).

// extFrame is a frame whose payload the sent buffer does not copy.
type extFrame struct {
	off  uint64 // ring offset of its header
	cum  uint64 // external payload bytes appended since the session began, this frame's included
	data []byte // shared, never written: the sender promised not to change it
}

// minSharedPayload is the smallest payload SendShared leaves outside the sent buffer: below it a
// copy costs less than the extra pieces each write then carries.
const minSharedPayload = 1 << 10

// messageFrames calls frame for each DATA frame of the message prefix‖msg, in order: the part of
// prefix and the part of msg it carries (at most MaxFramePayload in all), whether it is the last,
// and whether its part of msg may stay outside the sent buffer when shared (it is long enough to
// be worth it, and the prefix beside it fits in the header's byte for it).
func messageFrames(prefix, msg []byte, frame func(pre, rest []byte, eom, external bool)) {
	total := len(prefix) + len(msg)
	for off := 0; ; {
		n := min(total-off, MaxFramePayload)
		pre := prefix[min(off, len(prefix)):min(off+n, len(prefix))]
		rest := msg[max(off, len(prefix))-len(prefix) : max(off+n, len(prefix))-len(prefix)]
		off += n
		frame(pre, rest, off == total, len(rest) >= minSharedPayload && len(pre) <= maxKeptPrefix)
		if off == total {
			return
		}
	}
}

// keptBytes is what the sent buffer keeps for the message prefix‖msg: its frames, less the parts
// of msg kept by reference if shared.
func keptBytes(prefix, msg []byte, shared bool) int {
	kept := int(messageCost(len(prefix) + len(msg)))
	if shared {
		messageFrames(prefix, msg, func(_, rest []byte, _, external bool) {
			if external {
				kept -= len(rest)
			}
		})
	}
	return kept
}

// appendFrameLocked appends one DATA frame carrying pre‖p to the sent buffer, copying p unless
// external (then only pre is copied, and p is kept by reference). The caller made room
// (growSentLocked).
func (s *Session) appendFrameLocked(flags uint8, mid uint64, pre, p []byte, external bool) {
	kept := dataHdrLen + len(pre) + len(p)
	if external {
		kept = dataHdrLen + len(pre)
	}
	s.sbuf.ensure(s.sHead, s.sTail, kept)
	var b [dataHdrLen]byte
	dataHeader{flags: flags, n: len(pre) + len(p), pid: s.nextPID, mid: mid}.put(b[:])
	if external {
		b[2], b[3] = sentExternal, byte(len(pre))
		s.extTotal += uint64(len(p))
		s.ext = append(s.ext, extFrame{off: s.sTail, cum: s.extTotal, data: p})
	}
	s.sbuf.put(s.sTail, b[:])
	if len(pre) > 0 {
		s.sbuf.put(s.sTail+dataHdrLen, pre)
	}
	if !external {
		s.sbuf.put(s.sTail+dataHdrLen+uint64(len(pre)), p)
	}
	s.sTail += uint64(kept)
	s.nextPID++
}

// bufferedLocked is the cost of the frames in the sent buffer: what SendBufferBytes bounds.
func (s *Session) bufferedLocked() uint64 { return s.sTail - s.sHead + s.extTotal - s.extFreed }

// extAfterLocked is the index in s.ext of the first external frame at or after ring offset off.
func (s *Session) extAfterLocked(off uint64) int {
	lo, hi := s.extHead, len(s.ext)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s.ext[m].off < off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// costAtLocked is the cost offset of ring offset off, a frame boundary in [sHead, sTail].
func (s *Session) costAtLocked(off uint64) uint64 {
	if i := s.extAfterLocked(off); i > s.extHead {
		return off + s.ext[i-1].cum
	}
	return off + s.extFreed
}

// headerAtLocked returns the header of the frame kept at ring offset off.
func (s *Session) headerAtLocked(off uint64, scratch *[dataHdrLen]byte) dataHdr {
	return dataHdr(s.sbuf.view(off, scratch))
}

// dataLimitLocked is how far the writer may send: the end of the last whole frame within the
// peer's credit.
func (s *Session) dataLimitLocked() uint64 {
	if s.state == StateDisconnected {
		return s.writeOff
	}
	credit := s.peerAck.credit
	if s.sTail+s.extTotal <= credit {
		return s.sTail
	}
	off, cost := s.writeOff, s.costAtLocked(s.writeOff)
	var scratch [dataHdrLen]byte
	for off < s.sTail {
		h := s.headerAtLocked(off, &scratch)
		cost += frameCost(h.payloadLen())
		if cost > credit {
			break
		}
		off += h.keptLen()
	}
	return off
}

// freeAckedLocked drops frames the peer acknowledged and the writer is done with.
func (s *Session) freeAckedLocked() {
	freed := false
	var scratch [dataHdrLen]byte
	for s.sHead < s.sTail && s.sHeadPID <= s.peerAck.rPID {
		h := s.headerAtLocked(s.sHead, &scratch)
		end := s.sHead + h.keptLen()
		if end > s.sentOff {
			break
		}
		if h.flags()&flagEOM != 0 {
			s.ackedMID = h.mid()
		}
		if h.external() {
			s.extFreed = s.ext[s.extHead].cum
			s.ext[s.extHead] = extFrame{}
			if s.extHead++; s.extHead == len(s.ext) {
				s.ext, s.extHead = s.ext[:0], 0
			}
		}
		s.sHead = end
		s.sHeadPID++
		freed = true
	}
	if !freed {
		return
	}
	s.writeOff = max(s.writeOff, s.sHead)
	s.progressLocked()
	s.wakeSendersLocked()
	if s.closing != notClosing {
		s.wakeWriterLocked()
	}
}

// markResentLocked flags every frame from sHead up to to as sent before: they go again on a new
// connection.
func (s *Session) markResentLocked(to uint64) {
	var scratch [dataHdrLen]byte
	for off := s.sHead; off < to && off < s.sTail; {
		h := s.headerAtLocked(off, &scratch)
		s.sbuf.put(off+1, []byte{h.flags() | flagResent})
		off += h.keptLen()
		s.stats.FramesResent++
	}
}

// appendDataLocked adds the frames from ring offset from to to, to batch w: spans of the ring as
// they are, with each external frame's header (its mark cleared) and shared payload in between.
// It stops early after maxExtPerBatch external frames and returns where it stopped: a frame
// boundary.
func (s *Session) appendDataLocked(w *writeBatch, from, to uint64) uint64 {
	k := 0
	for i := s.extAfterLocked(from); i < len(s.ext) && s.ext[i].off < to; i++ {
		if k == maxExtPerBatch {
			return from
		}
		if k == 0 {
			w.growForExternal()
		}
		e := &s.ext[i]
		w.appendSpan(s.sbuf.span(from, e.off))
		h := dataHdr(w.exthdr[k][:])
		s.sbuf.get(e.off, h)
		from = e.off + dataHdrLen + uint64(h.prefixLen())
		h.clearKeptMarks()
		w.bufs = append(w.bufs, h)
		w.appendSpan(s.sbuf.span(e.off+dataHdrLen, from))
		w.bufs = append(w.bufs, e.data)
		k++
	}
	w.appendSpan(s.sbuf.span(from, to))
	return to
}

// maxExtPerBatch bounds the external frames one write carries: each takes two pieces of the
// writev, and the batch's pieces live in a fixed array.
const maxExtPerBatch = 8

// memBudget is memory the sessions of a listener share: their sent buffers take from it as they
// grow and give back as they shrink, so strangers that never read cannot pin more in total than
// Config.MaxSendMemory, whatever their number. A nil budget (a client's session) is unlimited.
type memBudget struct {
	limit int64
	used  atomic.Int64
}

func (b *memBudget) take(n int) bool {
	if b == nil {
		return true
	}
	for {
		u := b.used.Load()
		if u+int64(n) > b.limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+int64(n)) {
			return true
		}
	}
}

func (b *memBudget) give(n int) {
	if b != nil {
		b.used.Add(-int64(n))
	}
}

// sendBudget is the budget this session's sent buffer takes from: its listener's, if any.
func (s *Session) sendBudget() *memBudget {
	if s.lis == nil {
		return nil
	}
	return &s.lis.sendMem
}

// errSendMemory is why a send fails when the listener's budget is used up.
var errSendMemory = ftslerr.Errorf("%w: the listener's MaxSendMemory is used up by its sessions", ErrBufferFull)

// growSentLocked makes room in the sent buffer for kept more bytes, taking what it grows by from
// the listener's budget. It reports false, growing nothing, if the budget cannot give that much,
// unless force (a MessageWriter's cancel must always go).
func (s *Session) growSentLocked(kept int, force bool) bool {
	need := int(s.sTail-s.sHead) + kept
	if need <= len(s.sbuf.buf) {
		return true
	}
	grow := ringCap(need) - len(s.sbuf.buf)
	if b := s.sendBudget(); !b.take(grow) {
		if !force {
			return false
		}
		b.used.Add(int64(grow))
	}
	s.sentCharged += grow
	s.sbuf.ensure(s.sHead, s.sTail, kept)
	return true
}

// dropSentRingLocked gives back the sent buffer's memory, when it holds nothing. A write still
// under way keeps the old array alive until it returns.
func (s *Session) dropSentRingLocked() {
	s.releaseSentBudgetLocked()
	s.sbuf = ring{}
}

// releaseSentBudgetLocked gives the listener's budget back what this session's sent buffer took.
// An ended session calls it and keeps its buffer (its bookkeeping still reads it) until it is
// collected.
func (s *Session) releaseSentBudgetLocked() {
	s.sendBudget().give(s.sentCharged)
	s.sentCharged = 0
}
