package replication

import (
	"sync"
	"sync/atomic"
)

// payloadBuf is a write's frame body (epoch, offset, then the data or the
// length), shared by every peer it is queued for. Each queued copy holds a
// reference, and so does the writer until it has shipped to every peer;
// when the last is released, a large buffer goes back to a pool for the
// next write. Allocating a new 1 MiB buffer per write made the Go runtime
// fault fresh pages in, zero them and hand them back to the kernel:
// memmove, madvise and memclr were half of the primary's CPU time in
// bench/replication's volume run.
type payloadBuf struct {
	b    []byte
	refs atomic.Int32
	// class is the pool it returns to; -1: none (small, or built by
	// append).
	class int
	// out counts, for its volume, the pooled buffers not yet returned.
	out *atomic.Int64
}

// poolStep is the size granularity of pooled buffers; a write of less
// than one step is not pooled (its allocation is cheap).
const poolStep = 64 << 10

// payloadPools holds released buffers by capacity: class c has
// (c+1)*poolStep bytes.
var payloadPools [(maxPayload + poolStep - 1) / poolStep]sync.Pool

// poisonReleased (tests) zeroes the data of a buffer as it returns to the
// pool, so that a buffer still in use is seen at once.
var poisonReleased atomic.Bool

// newPayload returns a body of n bytes (its contents undefined when it
// comes from the pool), held once by the caller; out counts it until it
// returns.
func newPayload(n int, out *atomic.Int64) *payloadBuf {
	if n < poolStep || n > maxPayload {
		pb := &payloadBuf{b: make([]byte, n), class: -1}
		pb.refs.Store(1)
		return pb
	}
	class := (n+poolStep-1)/poolStep - 1
	out.Add(1)
	if pb, ok := payloadPools[class].Get().(*payloadBuf); ok {
		pb.b, pb.out = pb.b[:n], out
		pb.refs.Store(1)
		return pb
	}
	pb := &payloadBuf{b: make([]byte, n, (class+1)*poolStep), class: class, out: out}
	pb.refs.Store(1)
	return pb
}

// smallPayload wraps a body built by append, never pooled.
func smallPayload(b []byte) *payloadBuf {
	pb := &payloadBuf{b: b, class: -1}
	pb.refs.Store(1)
	return pb
}

// hold takes one more reference, for a peer's queue, and returns the body.
func (pb *payloadBuf) hold() []byte {
	pb.refs.Add(1)
	return pb.b
}

// release drops one reference; the last returns a pooled buffer.
func (pb *payloadBuf) release() {
	if pb == nil || pb.refs.Add(-1) != 0 || pb.class < 0 {
		return
	}
	pb.out.Add(-1)
	if poisonReleased.Load() {
		clear(pb.b[16:])
	}
	payloadPools[pb.class].Put(pb)
}
