package replication

import (
	"context"
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// Online grow (DRBD's resize): once the backing storage grew at every
// site, the primary grows the volume: the peers first (each grows its
// replica, bitmaps and metadata, and answers), then itself. Writes wait
// meanwhile (the fence); the NBD export's new clients see the new size.

// grower is a backend that can take a larger volume.
type grower interface {
	// canGrow says whether the backing storage holds size bytes.
	canGrow(size int64) error
	// grow makes it so, after canGrow (a file is extended; a device is
	// large enough already).
	grow(size int64) error
}

func (b *fileBackend) canGrow(size int64) error {
	if !b.device {
		// A sparse file grows without space, but not past its file
		// system: that bounds the bitmaps too.
		var st unix.Statfs_t
		if err := unix.Fstatfs(int(b.f.Fd()), &st); err != nil {
			return fmt.Errorf("file system of %s: %w", b.f.Name(), err)
		}
		if total := int64(st.Blocks) * st.Bsize; size > total {
			return fmt.Errorf("%d bytes is more than the file system of %s holds (%d)", size, b.f.Name(), total)
		}
		return nil
	}
	end, err := b.f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("size of block device %s: %w", b.f.Name(), err)
	}
	if end < size {
		return fmt.Errorf("block device %s has %d bytes, fewer than %d: grow it first (lvextend)", b.f.Name(), end, size)
	}
	return nil
}

func (b *fileBackend) grow(size int64) error {
	if b.device {
		return nil
	}
	st, err := b.f.Stat()
	if err != nil {
		return err
	}
	if st.Size() < size {
		if err := b.f.Truncate(size); err != nil {
			return fmt.Errorf("extend volume file %s: %w", b.f.Name(), err)
		}
	}
	return nil
}

// Resize grows the volume to size bytes, at the primary, with every peer
// connected. Shrinking is refused (a file system on it would lose its
// end).
func (v *Volume) Resize(ctx context.Context, size int64) error {
	if size <= 0 || size%BlockSize != 0 {
		return fmt.Errorf("resize: %d bytes: want a positive multiple of %d", size, BlockSize)
	}
	v.fence.Lock()
	defer v.fence.Unlock()
	if v.Role() != Primary {
		return fmt.Errorf("resize: %w (grow the volume at the primary)", ErrNotPrimary)
	}
	cur := v.Size()
	switch {
	case size < cur:
		return fmt.Errorf("resize: %d bytes is smaller than the volume (%d): shrinking is not supported", size, cur)
	case size == cur:
		return nil
	}
	g, ok := v.be.(grower)
	if !ok {
		return errors.New("resize: this volume's backend cannot grow")
	}
	if err := g.canGrow(size); err != nil {
		return fmt.Errorf("resize: %w", err)
	}
	waits := map[string]chan string{}
	for _, name := range v.order {
		p := v.peers[name]
		p.mu.Lock()
		if !p.connectedLocked() || p.conn == nil {
			p.mu.Unlock()
			return fmt.Errorf("resize: peer %s is not connected (%s): every replica grows together", name, p.state)
		}
		ch := make(chan string, 1)
		p.resizeDone = ch
		var e enc
		e.u64(uint64(size))
		p.enqueueLocked(item{typ: fResize, payload: e.b})
		p.mu.Unlock()
		waits[name] = ch
	}
	for _, name := range v.order {
		select {
		case msg, ok := <-waits[name]:
			switch {
			case !ok:
				return fmt.Errorf("resize: peer %s was lost before it answered", name)
			case msg != "":
				return fmt.Errorf("resize: peer %s: %s", name, msg)
			}
		case <-ctx.Done():
			return fmt.Errorf("resize: waiting for peer %s: %w", name, ctx.Err())
		}
	}
	return v.grow(size)
}

// grow extends this replica to size bytes: the backing storage, every
// peer's bitmap, then the metadata; the new size takes effect last.
func (v *Volume) grow(size int64) error {
	cur := v.Size()
	switch {
	case size == cur:
		return nil
	case size < cur:
		return fmt.Errorf("%d bytes is smaller than the volume (%d): shrinking is not supported", size, cur)
	case size%BlockSize != 0:
		return fmt.Errorf("%d bytes: not a multiple of %d", size, BlockSize)
	}
	g, ok := v.be.(grower)
	if !ok {
		return errors.New("this volume's backend cannot grow")
	}
	if err := g.canGrow(size); err != nil {
		return err
	}
	if err := g.grow(size); err != nil {
		return err
	}
	for _, name := range v.order {
		if err := v.peers[name].bm.grow(size / BlockSize); err != nil {
			return err
		}
	}
	v.mu.Lock()
	v.m.Size = size
	err := v.store.save(v.m)
	v.mu.Unlock()
	if err != nil {
		return fmt.Errorf("save the new size: %w", err)
	}
	v.size.Store(size)
	v.al.setSize(size)
	v.log.Info("volume grown", "from", cur, "to", size)
	v.event("resized", "volume %s grown from %d to %d bytes", v.cfg.Name, cur, size)
	return nil
}

// takeResize answers the primary's resize request.
func (p *peer) takeResize(d *dec) error {
	size := int64(d.u64())
	if err := d.done(); err != nil {
		return err
	}
	var e enc
	e.u64(uint64(size))
	if err := p.v.grow(size); err != nil {
		p.v.log.Error("cannot grow the volume as the primary asks", "peer", p.name, "size", size, "err", err)
		e.str(err.Error())
	} else {
		e.str("")
	}
	p.enqueue(fResizeDone, e.b)
	return nil
}

// takeResizeDone passes the peer's answer to the waiting Resize.
func (p *peer) takeResizeDone(d *dec) error {
	d.u64()
	msg := d.str()
	if err := d.done(); err != nil {
		return err
	}
	p.mu.Lock()
	ch := p.resizeDone
	p.resizeDone = nil
	p.mu.Unlock()
	if ch != nil {
		ch <- msg
	}
	return nil
}
