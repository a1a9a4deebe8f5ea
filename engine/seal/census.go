package seal

import "fmt"

// Census counts the keystore's data keys and how many of them are wrapped by
// the current master key: the rest wait for a Rewrap. It reads the entries'
// headers only, without unwrapping any.
func (k *Keystore) Census() (total, current int, err error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	err = k.store.Each(func(_, v []byte) error {
		total++
		if k.wrappedByCurrent(v) {
			current++
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("seal: keystore: %w", err)
	}
	return total, current, nil
}

// Previous is how many previous master keys are configured (a rotation).
func (k *Keystore) Previous() int { return len(k.previous) }
