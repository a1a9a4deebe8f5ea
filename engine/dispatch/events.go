package dispatch

import (
	"container/list"
	"sync"

	"github.com/hookrelay/hookrelay/engine/outbound"
	"github.com/hookrelay/hookrelay/engine/spool"
)

// eventCacheBytes bounds the events the dispatcher keeps read and decoded,
// counted as their envelope and raw body.
const eventCacheBytes = 16 << 20

// eventCache keeps the events being delivered, read from the spool and
// parsed once: an event's deliveries to several destinations and its
// retries share them. It holds the most recently used up to
// eventCacheBytes; an erasure drops its events at once (forget), so no
// erased event stays in memory.
type eventCache struct {
	mu   sync.Mutex
	max  int
	size int
	byID map[string]*list.Element
	lru  list.List // of *cachedEvent, most recent first
	// reading are the events a worker is reading from the spool; the
	// channel closes when it is done, and the others wait for it rather
	// than read the same event again (an event's lanes start together).
	reading map[string]chan struct{}
	// forgot counts the forgets: an event read from the spool before one
	// may be of the key it dropped, and is not kept (put's since).
	forgot uint64
}

type cachedEvent struct {
	ev  *spool.Event
	msg *outbound.Message
}

func newEventCache(max int) *eventCache {
	return &eventCache{max: max, byID: map[string]*list.Element{}, reading: map[string]chan struct{}{}}
}

func (c *eventCache) get(id string) (*spool.Event, *outbound.Message, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byID[id]
	if !ok {
		return nil, nil, false
	}
	c.lru.MoveToFront(e)
	ce := e.Value.(*cachedEvent)
	return ce.ev, ce.msg, true
}

// claim makes the caller the one to read id from the spool, or returns
// the channel that closes when the worker reading it is done.
func (c *eventCache) claim(id string) (wait <-chan struct{}, mine bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch, ok := c.reading[id]; ok {
		return ch, false
	}
	c.reading[id] = make(chan struct{})
	return nil, true
}

// done ends the caller's claim on id.
func (c *eventCache) done(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.reading[id])
	delete(c.reading, id)
}

// forgets returns the count put's since compares.
func (c *eventCache) forgets() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.forgot
}

// put keeps ev and its message, read when forgets returned since; an
// event larger than the whole cache, or read before a forget since, is not
// kept (an erasure's event must not come back). It returns the message kept
// for ev's id, which may be one another worker put first.
func (c *eventCache) put(ev *spool.Event, msg *outbound.Message, since uint64) (*spool.Event, *outbound.Message) {
	n := len(ev.Envelope) + len(ev.Raw)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byID[ev.ID]; ok {
		ce := e.Value.(*cachedEvent)
		return ce.ev, ce.msg
	}
	if n > c.max || c.forgot != since {
		return ev, msg
	}
	for c.size+n > c.max {
		c.drop(c.lru.Back())
	}
	c.byID[ev.ID] = c.lru.PushFront(&cachedEvent{ev, msg})
	c.size += n
	return ev, msg
}

// drop removes e. c.mu held.
func (c *eventCache) drop(e *list.Element) {
	ce := c.lru.Remove(e).(*cachedEvent)
	delete(c.byID, ce.ev.ID)
	c.size -= len(ce.ev.Envelope) + len(ce.ev.Raw)
}

// forget drops the events of provider's key.
func (c *eventCache) forget(provider, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forgot++
	for e := c.lru.Front(); e != nil; {
		next := e.Next()
		if ev := e.Value.(*cachedEvent).ev; ev.Provider == provider && ev.Key == key {
			c.drop(e)
		}
		e = next
	}
}

// forgetID drops one event.
func (c *eventCache) forgetID(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byID[id]; ok {
		c.drop(e)
	}
}

// event is the event id, read from the spool and kept parsed on first use.
// Workers that want it at once wait for the one reading it; one that then
// still misses it (an error, an event too large to keep) reads it itself.
func (d *Dispatcher) event(id string) (*spool.Event, *outbound.Message, error) {
	for {
		if ev, msg, ok := d.events.get(id); ok {
			return ev, msg, nil
		}
		wait, mine := d.events.claim(id)
		if mine {
			return d.readEvent(id)
		}
		<-wait
	}
}

// readEvent reads id from the spool and keeps it, under the caller's claim.
func (d *Dispatcher) readEvent(id string) (*spool.Event, *outbound.Message, error) {
	defer d.events.done(id)
	since := d.events.forgets()
	ev, err := d.spool.Event(id)
	if err != nil {
		return nil, nil, err
	}
	ev, msg := d.events.put(ev, messageOf(ev), since)
	return ev, msg, nil
}

// messageOf is what a destination is sent of ev.
func messageOf(ev *spool.Event) *outbound.Message {
	return &outbound.Message{
		ID: ev.ID, IdempotencyID: ev.IdempotencyID, Provider: ev.Provider, Type: ev.Type,
		Envelope: ev.Envelope, Raw: ev.Raw,
	}
}

// Forget drops from memory every event of provider's key that the
// dispatcher keeps read: an erasure (SPEC 11) leaves none behind.
func (d *Dispatcher) Forget(provider, key string) { d.events.forget(provider, key) }
