package core

import "math/bits"

// ring is a byte queue addressed by absolute offsets that only grow: the byte at offset o lives
// at buf[o&(len(buf)-1)]. Offsets never wrap in practice (2^64 bytes), so the owners compare
// them directly. The ring knows nothing of which offsets are live; its owner tracks head and
// tail and passes them in. Its capacity is a power of two, grown on demand up to the owner's
// bound rounded up to a power of two, so an idle session costs little memory.
type ring struct {
	buf []byte
}

const minRingCap = 4 << 10

// ensure makes room for n bytes past tail while [head, tail) stays in place. It reports whether
// it had to move to a new array: slices handed out from the old one stay valid and unchanged.
func (r *ring) ensure(head, tail uint64, n int) bool {
	need := int(tail-head) + n
	if need <= len(r.buf) {
		return false
	}
	c := ringCap(need)
	old := *r
	r.buf = make([]byte, c)
	if len(old.buf) > 0 && tail > head {
		a, b := old.span(head, tail)
		r.put(head, a)
		r.put(head+uint64(len(a)), b)
	}
	return true
}

// ringCap is the capacity a ring grows to for need bytes: a power of two, at least minRingCap.
func ringCap(need int) int { return max(minRingCap, 1<<bits.Len(uint(need-1))) }

// span returns the bytes at [from, to) as one or two slices of the backing array (the second
// is empty unless the range wraps). to-from must not exceed the capacity.
func (r *ring) span(from, to uint64) (a, b []byte) {
	if from == to {
		return nil, nil
	}
	mask := uint64(len(r.buf) - 1)
	i, j := from&mask, to&mask
	if i < j {
		return r.buf[i:j], nil
	}
	return r.buf[i:], r.buf[:j]
}

// put copies p to offset off.
func (r *ring) put(off uint64, p []byte) {
	i := int(off & uint64(len(r.buf)-1))
	n := copy(r.buf[i:], p)
	copy(r.buf, p[n:])
}

// get copies len(p) bytes at offset off into p.
func (r *ring) get(off uint64, p []byte) {
	i := int(off & uint64(len(r.buf)-1))
	n := copy(p, r.buf[i:])
	copy(p[n:], r.buf)
}

// view returns the dataHdrLen bytes at off: in place when they do not wrap, else copied into
// scratch.
func (r *ring) view(off uint64, scratch *[dataHdrLen]byte) []byte {
	i := off & uint64(len(r.buf)-1)
	if i+dataHdrLen <= uint64(len(r.buf)) {
		return r.buf[i : i+dataHdrLen : i+dataHdrLen]
	}
	r.get(off, scratch[:])
	return scratch[:]
}
