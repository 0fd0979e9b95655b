package stack

// startEmbedded would run a dev-only in-process store; none is built in
// yet, so a machine without redis-server is told what to install.
func startEmbedded(*Stack) (redisBackend, error) { return nil, ErrNoRedis }
