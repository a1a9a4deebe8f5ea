package jetstream

import "context"

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
