package replication

import (
	"errors"
	"time"

	"github.com/geobooth/geobooth/api"
)

// VerifyJob is the running verify, or the last one (the API's type).
type VerifyJob = api.VerifyJob

// A verify of a large volume takes longer than any HTTP request should:
// StartVerify runs it in the background, and Status shows its progress
// (and the outcome of the last one) until the next.

// ErrVerifyRunning: a verify of the volume is already under way.
var ErrVerifyRunning = errors.New("a verify of this volume is already running")

// StartVerify starts a verify against peer in the background (see
// Verify) and returns its first state; the volume's Status follows it.
// It ends with the volume.
func (v *Volume) StartVerify(peer string, repair bool) (VerifyJob, error) {
	if v.peers[peer] == nil {
		return VerifyJob{}, errors.New("no peer " + peer)
	}
	v.mu.Lock()
	if v.closed || v.ctx == nil {
		v.mu.Unlock()
		return VerifyJob{}, ErrClosed
	}
	if v.job != nil && v.job.Running {
		j := *v.job
		v.mu.Unlock()
		return j, ErrVerifyRunning
	}
	v.job = &VerifyJob{Peer: peer, Repair: repair, Running: true, Started: time.Now(), Total: v.blocks()}
	j := *v.job
	v.wg.Add(1)
	v.mu.Unlock()
	v.met.verifyProgress.Set(0)
	v.log.Info("verify started", "peer", peer, "repair", repair, "blocks", v.blocks())
	go func() {
		defer v.wg.Done()
		rep, err := v.verify(v.ctx, peer, repair, func(checked int64, differing int) {
			v.mu.Lock()
			v.job.Checked, v.job.Differing = checked, differing
			v.mu.Unlock()
			v.met.verifyProgress.Set(float64(checked) / float64(max(v.blocks(), 1)))
		})
		end := time.Now()
		v.mu.Lock()
		job := v.job
		job.Running, job.Ended = false, &end
		job.Checked, job.Differing, job.Resynced = rep.Checked, len(rep.Differing), rep.Resynced
		job.First = rep.Differing[:min(len(rep.Differing), 100)]
		if err != nil {
			job.Error = err.Error()
		}
		v.mu.Unlock()
		v.log.Info("verify ended", "peer", peer, "checked_blocks", rep.Checked, "differing_blocks", len(rep.Differing), "resynced", rep.Resynced, "err", err)
		v.event("verify", "volume %s against %s: %d blocks checked, %d different%s", v.cfg.Name, peer, rep.Checked, len(rep.Differing), map[bool]string{true: " (resynced)", false: ""}[rep.Resynced])
	}()
	return j, nil
}
