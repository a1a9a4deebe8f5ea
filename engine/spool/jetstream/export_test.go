package jetstream

import (
	"context"
	"strconv"
)

// StreamLeader names the server leading the events stream, for the
// cluster test's kill.
func StreamLeader(s *Store) (string, error) {
	ctx, cancel := s.ctx(context.Background())
	defer cancel()
	info, err := s.stream.Info(ctx)
	if err != nil {
		return "", err
	}
	if info.Cluster == nil {
		return "", nil
	}
	return info.Cluster.Leader, nil
}

// DirectBuckets names the store's buckets that any replica may answer
// reads of (none should).
func DirectBuckets(s *Store) ([]string, error) {
	ctx, cancel := s.ctx(context.Background())
	defer cancel()
	var out []string
	for _, b := range []string{"dlv", "idem", "quar", "poll", "lastseq", "paused"} {
		st, err := s.js.Stream(ctx, "KV_"+s.name+"_"+b)
		if err != nil {
			return nil, err
		}
		if st.CachedInfo().Config.AllowDirect {
			out = append(out, b)
		}
	}
	return out, nil
}

// LowMark is what S_low holds for partition p, 0 when nothing.
func LowMark(s *Store, p uint32) uint64 {
	ctx, cancel := s.ctx(context.Background())
	defer cancel()
	e, err := s.ls.low.Get(ctx, leaseKey(p))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(string(e.Value()), 10, 64)
	return n
}

// FeedRead is the stream sequence of the last event partition p's feed
// has read from the stream; 0 when this store does not hold p or read
// nothing yet.
func FeedRead(s *Store, p uint32) uint64 {
	s.ls.mu.RLock()
	l := s.ls.held[p]
	s.ls.mu.RUnlock()
	if l == nil {
		return 0
	}
	return l.readTo.Load()
}
