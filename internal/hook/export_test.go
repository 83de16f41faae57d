package hook

// SetMaxRemembered lets a test fill a Receiver's memory quickly.
func SetMaxRemembered(rv *Receiver, n int) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	rv.max = n
}
