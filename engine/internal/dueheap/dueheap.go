package engine

import "time"

// timerSlot is what a dueHeap needs of an item: when it is due, and where
// it sits in the heap (-1 when it is not in one), for heap.Fix and Remove.
type timerSlot struct {
	at  time.Time
	idx int
}

func (s *timerSlot) slot() *timerSlot { return s }

// dueHeap is a container/heap of items, soonest due first: the dispatcher's
// keys waiting for their next attempt and the poller's keys waiting for
// their next poll.
type dueHeap[T interface{ slot() *timerSlot }] []T

func (h dueHeap[T]) Len() int           { return len(h) }
func (h dueHeap[T]) Less(i, j int) bool { return h[i].slot().at.Before(h[j].slot().at) }
func (h dueHeap[T]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].slot().idx, h[j].slot().idx = i, j
}

func (h *dueHeap[T]) Push(x any) {
	item := x.(T)
	item.slot().idx = len(*h)
	*h = append(*h, item)
}

func (h *dueHeap[T]) Pop() any {
	old := *h
	item := old[len(old)-1]
	var zero T
	old[len(old)-1] = zero
	*h = old[:len(old)-1]
	item.slot().idx = -1
	return item
}
