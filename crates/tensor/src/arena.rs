//! The bookkeeping of a caching allocator, in units and without memory: segments obtained from
//! the system, carved into blocks by best fit, coalesced when freed. The CPU buffer pool
//! (`cpu::buffer`) maps it onto real memory and the [`Meter`](crate::Meter) runs the very same
//! decisions on lengths alone, so a run's estimate is the pool's own footprint.
//!
//! Why not a free list per exact length: a training step frees buffers of one set of sizes (the
//! forward's activations, im2col columns, Winograd tiles) while it asks for others (the
//! backward's gradients), so exact-length reuse holds the sum of both; best fit with splitting and
//! coalescing lets a freed activation serve a gradient of another size. Measured with the meter
//! at batch 128, a training step's live buffers peak at 1.22 GiB (NiN@224) and 0.84 GiB
//! (GoogLeNet@96); reuse by exact length held 1.94 and 1.81 GiB, best fit in segments of 4 GiB
//! holds 1.43 and 1.08, steady from the tenth step on.
//!
//! Segments are never split between owners and never moved, so a block's address is fixed for
//! its life; a segment goes back to the system only when it is entirely free.
use std::collections::{BTreeMap, BTreeSet};

/// Where a block lives: its segment and its offset there, in units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Place {
    /// The segment's id, as returned by [`Arena::add_segment`].
    pub segment: usize,
    /// The block's first unit within the segment.
    pub offset: usize,
}

#[derive(Debug)]
struct Segment {
    units: usize,
    /// The end of the furthest block ever handed out: the part of the segment that has been
    /// written, which a system that commits memory lazily counts as resident.
    touched: usize,
    /// The blocks by offset, covering the segment without gaps.
    blocks: BTreeMap<usize, Block>,
}

#[derive(Clone, Copy, Debug)]
struct Block {
    units: usize,
    free: bool,
}

/// Blocks of the segments added to it, each either free or handed out.
#[derive(Default, Debug)]
pub struct Arena {
    /// By id; `None` once released.
    segments: Vec<Option<Segment>>,
    /// The free blocks, by size first: the first at or above a request is its best fit.
    free: BTreeSet<(usize, Place)>,
    free_units: usize,
    segment_units: usize,
    touched_units: usize,
}

impl Arena {
    /// An arena with no segment.
    pub fn new() -> Arena {
        Arena::default()
    }

    /// Units held in segments (free and handed out).
    pub fn segment_units(&self) -> usize {
        self.segment_units
    }

    /// Units of the segments that blocks have ever covered (see [`Arena::add_segment`]).
    pub fn touched_units(&self) -> usize {
        self.touched_units
    }

    /// Units held in free blocks.
    pub fn free_units(&self) -> usize {
        self.free_units
    }

    /// The smallest free block of at least `units`, cut to `units` (the rest stays free), or
    /// `None` when no free block is large enough.
    pub fn take(&mut self, units: usize) -> Option<Place> {
        assert!(units > 0, "an arena block of 0 units");
        let &(size, place) = self.free.range((units, Place { segment: 0, offset: 0 })..).next()?;
        self.free.remove(&(size, place));
        self.free_units -= size;
        let seg = self.segments[place.segment].as_mut().expect("a free block of a released segment");
        let end = place.offset + units;
        if end > seg.touched {
            self.touched_units += end - seg.touched;
            seg.touched = end;
        }
        let blocks = &mut seg.blocks;
        blocks.insert(place.offset, Block { units, free: false });
        if size > units {
            let rest = Place { segment: place.segment, offset: place.offset + units };
            blocks.insert(rest.offset, Block { units: size - units, free: true });
            self.free.insert((size - units, rest));
            self.free_units += size - units;
        }
        Some(place)
    }

    /// Registers a new segment of `units` (memory the caller has obtained) and hands out its first
    /// `taken` units; the rest is free. Returns the block's place, whose segment is the new id.
    pub fn add_segment(&mut self, units: usize, taken: usize) -> Place {
        assert!(taken > 0 && taken <= units, "a segment of {units} units cannot hand out {taken}");
        let segment = self.segments.len();
        let mut blocks = BTreeMap::new();
        blocks.insert(0, Block { units: taken, free: false });
        if units > taken {
            blocks.insert(taken, Block { units: units - taken, free: true });
            self.free.insert((units - taken, Place { segment, offset: taken }));
            self.free_units += units - taken;
        }
        self.segments.push(Some(Segment { units, touched: taken, blocks }));
        self.segment_units += units;
        self.touched_units += taken;
        Place { segment, offset: 0 }
    }

    /// Returns the block at `place` (handed out by [`Arena::take`] or [`Arena::add_segment`]),
    /// merging it with free neighbours.
    pub fn give_back(&mut self, place: Place) {
        let blocks = &mut self
            .segments
            .get_mut(place.segment)
            .and_then(Option::as_mut)
            .expect("a segment the arena does not hold")
            .blocks;
        let block = *blocks.get(&place.offset).expect("giving back a block the arena never handed out");
        assert!(!block.free, "a block given back twice");
        let (mut start, mut units) = (place.offset, block.units);
        let mut merged = Vec::new();
        if let Some((&next_at, &next)) = blocks.range(start + units..).next() {
            if next.free {
                debug_assert_eq!(next_at, start + units);
                blocks.remove(&next_at);
                merged.push((next.units, next_at));
                units += next.units;
            }
        }
        if let Some((&prev_at, &prev)) = blocks.range(..start).next_back() {
            if prev.free {
                blocks.remove(&start);
                merged.push((prev.units, prev_at));
                start = prev_at;
                units += prev.units;
            }
        }
        blocks.insert(start, Block { units, free: true });
        for (size, offset) in merged {
            self.free.remove(&(size, Place { segment: place.segment, offset }));
            self.free_units -= size;
        }
        self.free.insert((units, Place { segment: place.segment, offset: start }));
        self.free_units += units;
    }

    /// Forgets every segment that is entirely free and returns their ids, for the caller to give
    /// their memory back.
    pub fn release_free_segments(&mut self) -> Vec<usize> {
        let mut released = Vec::new();
        for (id, slot) in self.segments.iter_mut().enumerate() {
            let Some(seg) = slot else { continue };
            let whole = seg.blocks.len() == 1 && seg.blocks.get(&0).is_some_and(|b| b.free);
            if whole {
                self.free.remove(&(seg.units, Place { segment: id, offset: 0 }));
                self.free_units -= seg.units;
                self.segment_units -= seg.units;
                self.touched_units -= seg.touched;
                *slot = None;
                released.push(id);
            }
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every segment's blocks tile it, no two free blocks touch, and the free set and counters
    /// agree with the blocks.
    fn check(a: &Arena) {
        let (mut free, mut held, mut listed) = (0, 0, 0);
        for (id, slot) in a.segments.iter().enumerate() {
            let Some(Segment { units, blocks, .. }) = slot else { continue };
            held += units;
            let mut at = 0;
            let mut prev_free = false;
            for (&offset, b) in blocks {
                assert_eq!(offset, at, "a gap or overlap in segment {id}");
                assert!(!(prev_free && b.free), "two free neighbours in segment {id}");
                if b.free {
                    free += b.units;
                    assert!(a.free.contains(&(b.units, Place { segment: id, offset })));
                    listed += 1;
                }
                prev_free = b.free;
                at += b.units;
            }
            assert_eq!(at, *units);
        }
        assert_eq!(listed, a.free.len());
        assert_eq!(free, a.free_units);
        assert_eq!(held, a.segment_units);
    }

    #[test]
    fn best_fit_splits_and_coalesces() {
        let mut a = Arena::new();
        let big = a.add_segment(100, 100);
        let small = a.add_segment(30, 30);
        a.give_back(big);
        a.give_back(small);
        check(&a);
        // 25 fits the 30-unit segment best, not the 100-unit one.
        let p = a.take(25).unwrap();
        assert_eq!(p, Place { segment: 1, offset: 0 });
        let q = a.take(40).unwrap();
        let r = a.take(40).unwrap();
        assert_eq!((q.segment, q.offset, r.offset), (0, 0, 40));
        assert_eq!(a.take(40), None, "20 units are left in segment 0, 5 in segment 1");
        check(&a);
        // Freeing the middle, then its neighbours, merges back to one block.
        a.give_back(q);
        check(&a);
        a.give_back(r);
        check(&a);
        assert_eq!(a.take(100), Some(Place { segment: 0, offset: 0 }));
        assert_eq!(a.release_free_segments(), Vec::<usize>::new());
        a.give_back(Place { segment: 0, offset: 0 });
        a.give_back(p);
        assert_eq!(a.release_free_segments(), vec![0, 1]);
        check(&a);
        assert_eq!((a.segment_units(), a.free_units()), (0, 0));
    }

    #[test]
    fn random_traffic_keeps_the_books() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut a = Arena::new();
        let mut live: Vec<(Place, usize)> = Vec::new();
        let mut live_units = 0;
        for step in 0..4000 {
            if live.is_empty() || rng.gen_bool(0.55) {
                let units = rng.gen_range(1..64);
                let place = a.take(units).unwrap_or_else(|| a.add_segment(units.max(96), units));
                // No two live blocks overlap.
                for &(p, u) in &live {
                    let apart = p.segment != place.segment
                        || p.offset + u <= place.offset
                        || place.offset + units <= p.offset;
                    assert!(apart, "step {step}: {place:?} overlaps {p:?}");
                }
                live.push((place, units));
                live_units += units;
            } else {
                let (place, units) = live.swap_remove(rng.gen_range(0..live.len()));
                a.give_back(place);
                live_units -= units;
            }
            if step % 100 == 0 {
                check(&a);
                assert_eq!(a.segment_units() - a.free_units(), live_units);
            }
            if step % 1000 == 999 {
                a.release_free_segments();
                check(&a);
            }
        }
    }
}
