// Package dueheap is a container/heap of items ordered by when they are due:
// the dispatcher's keys waiting for their next attempt (engine/dispatch) and
// the poller's keys waiting for their next poll. It is a leaf: it imports
// only the standard library.
package dueheap

import "time"

// Slot is what a Heap needs of an item: when it is due, and where it sits
// in the heap (-1 when it is not in one), for heap.Fix and Remove.
type Slot struct {
	At  time.Time
	Idx int
}

// HeapSlot returns s itself; embedding a Slot gives an item its Heap method.
func (s *Slot) HeapSlot() *Slot { return s }

// Heap is a container/heap of items, soonest due first.
type Heap[T interface{ HeapSlot() *Slot }] []T

func (h Heap[T]) Len() int           { return len(h) }
func (h Heap[T]) Less(i, j int) bool { return h[i].HeapSlot().At.Before(h[j].HeapSlot().At) }
func (h Heap[T]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].HeapSlot().Idx, h[j].HeapSlot().Idx = i, j
}

// Push adds x, a T; for container/heap.
func (h *Heap[T]) Push(x any) {
	item := x.(T)
	item.HeapSlot().Idx = len(*h)
	*h = append(*h, item)
}

// Pop removes the last item; for container/heap.
func (h *Heap[T]) Pop() any {
	old := *h
	item := old[len(old)-1]
	var zero T
	old[len(old)-1] = zero
	*h = old[:len(old)-1]
	item.HeapSlot().Idx = -1
	return item
}
