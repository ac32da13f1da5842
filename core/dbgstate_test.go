package core

import "fmt"

// debugState describes a session's internals, for failure messages of long tests.
func (s *Session) debugState() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("client=%v state=%v link=%v idle=%v sHead=%d sTail=%d sHeadPID=%d nextPID=%d nextMID=%d writeOff=%d sentOff=%d highOff=%d peerAck=%+v rPID=%d rDone=%d rHead=%d recvCost=%d released=%d dTake=%d dSettle=%d dRel=%d held=%d fails=%d/%d sentAck=%+v ackPending=%v due=%v waiters=%d recvWaiting=%d",
		s.client, s.state, s.link != nil, s.writerIdle, s.sHead, s.sTail, s.sHeadPID, s.nextPID, s.nextMID, s.writeOff, s.sentOff, s.highOff, s.peerAck,
		s.rPID, s.rDone, s.rHead, s.recvCost, s.releasedCost, s.dTake, s.dSettle, s.dRel, s.held, s.failWritten, len(s.fails), s.sentAck, s.ackPending, s.ackDue, len(s.waiters), s.recvWaiting)
}
