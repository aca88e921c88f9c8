//! The flow table's index: flow-key hash → slab slot, open addressing with
//! linear probing in one array of 8-byte buckets (the low 32 bits of the
//! hash beside the slot). The table computes the hashes of a datagram's
//! records first and [`FlowIndex::prefetch`]es their buckets, so the cache
//! misses of a batch overlap instead of queueing one behind the other.
//!
//! In: 64-bit hashes and slots. Out: slots. Deletion shifts the following
//! entries back (no tombstones), so probe chains never grow with churn.
//! From 2 MiB up the buckets sit in transparent huge pages where the kernel
//! gives them (`madvise`): every record's lookup reads a bucket anywhere in
//! the array, and with 4 KiB pages most of those reads missed the TLB too.

/// Low 32 bits of the hash, slot + 1 (0 is an empty bucket).
type Bucket = u64;

const EMPTY: Bucket = 0;

/// Index of live flows.
#[derive(Debug)]
pub struct FlowIndex {
    buckets: Buckets,
    mask: usize,
    len: usize,
}

impl Default for FlowIndex {
    fn default() -> Self {
        Self::new()
    }
}

#[inline]
fn tag(hash: u64) -> u32 {
    hash as u32
}

impl FlowIndex {
    pub fn new() -> Self {
        FlowIndex {
            buckets: Buckets::new(16),
            mask: 15,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn home(&self, t: u32) -> usize {
        t as usize & self.mask
    }

    /// Asks the CPU to fetch the bucket `hash` starts at.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        let p = &self.buckets[self.home(tag(hash))] as *const Bucket;
        prefetch(p.cast());
    }

    /// The slot of the entry with `hash` for which `eq(slot)` holds.
    #[inline]
    pub fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let t = tag(hash);
        let mut i = self.home(t);
        loop {
            let b = self.buckets[i];
            if b == EMPTY {
                return None;
            }
            if (b >> 32) as u32 == t {
                let slot = (b as u32).wrapping_sub(1);
                if eq(slot) {
                    return Some(slot);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Adds `slot` under `hash` (the caller knows it is not there yet).
    pub fn insert(&mut self, hash: u64, slot: u32) {
        if (self.len + 1) * 2 > self.buckets.len() {
            self.grow();
        }
        self.place((u64::from(tag(hash)) << 32) | u64::from(slot.wrapping_add(1)));
        self.len += 1;
    }

    fn place(&mut self, b: Bucket) {
        let mut i = self.home((b >> 32) as u32);
        while self.buckets[i] != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.buckets[i] = b;
    }

    fn grow(&mut self) {
        let doubled = Buckets::new(self.buckets.len() * 2);
        let old = std::mem::replace(&mut self.buckets, doubled);
        self.mask = self.buckets.len() - 1;
        for b in old.iter().copied().filter(|b| *b != EMPTY) {
            self.place(b);
        }
    }

    /// Removes the entry of `slot` filed under `hash`; false when absent.
    pub fn remove(&mut self, hash: u64, slot: u32) -> bool {
        let t = tag(hash);
        let want = (u64::from(t) << 32) | u64::from(slot.wrapping_add(1));
        let mut i = self.home(t);
        loop {
            let b = self.buckets[i];
            if b == EMPTY {
                return false;
            }
            if b == want {
                break;
            }
            i = (i + 1) & self.mask;
        }
        // backward-shift deletion: pull later entries of the chain into the hole
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let b = self.buckets[j];
            if b == EMPTY {
                break;
            }
            let home = self.home((b >> 32) as u32);
            // move b into the hole when its home is not in (i, j]
            if (j.wrapping_sub(home) & self.mask) >= (j.wrapping_sub(i) & self.mask) {
                self.buckets[i] = b;
                i = j;
            }
        }
        self.buckets[i] = EMPTY;
        self.len -= 1;
        true
    }

    /// Bytes the index holds.
    pub fn bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Bucket>()
    }
}

/// Arrays at least this large are aligned to huge pages and advised to use them.
const HUGE: usize = 2 << 20;

/// A zeroed array of buckets (`EMPTY` is 0), in huge pages from [`HUGE`] up.
#[derive(Debug)]
struct Buckets {
    ptr: std::ptr::NonNull<Bucket>,
    len: usize,
}

// SAFETY: `Buckets` owns its array like a `Box<[Bucket]>` does.
unsafe impl Send for Buckets {}
// SAFETY: as above; shared access only reads.
unsafe impl Sync for Buckets {}

impl Buckets {
    fn layout(len: usize) -> std::alloc::Layout {
        let bytes = len * std::mem::size_of::<Bucket>();
        let align = if bytes >= HUGE {
            HUGE
        } else {
            std::mem::align_of::<Bucket>()
        };
        std::alloc::Layout::from_size_align(bytes, align).expect("index size")
    }

    /// `len` (a power of two, at least 16) empty buckets.
    fn new(len: usize) -> Self {
        let layout = Self::layout(len);
        // SAFETY: the layout's size is not zero (len >= 16).
        let p = unsafe { std::alloc::alloc(layout) };
        let Some(ptr) = std::ptr::NonNull::new(p.cast::<Bucket>()) else {
            std::alloc::handle_alloc_error(layout)
        };
        #[cfg(target_os = "linux")]
        if layout.align() == HUGE {
            // SAFETY: advice on memory this array owns (before its pages
            // are first touched, so they can come as huge pages); an error
            // only means small pages.
            unsafe {
                libc::madvise(p.cast(), layout.size(), libc::MADV_HUGEPAGE);
            }
        }
        // SAFETY: `len` buckets were allocated; zero is `EMPTY`.
        unsafe { std::ptr::write_bytes(ptr.as_ptr(), 0, len) };
        Buckets { ptr, len }
    }
}

impl std::ops::Deref for Buckets {
    type Target = [Bucket];
    fn deref(&self) -> &[Bucket] {
        // SAFETY: `len` initialised buckets owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for Buckets {
    fn deref_mut(&mut self) -> &mut [Bucket] {
        // SAFETY: as in `deref`, borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Buckets {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr().cast(), Self::layout(self.len)) }
    }
}

/// Prefetches the cache line at `p` (a hint; no effect where unsupported).
#[inline]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint and never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Random inserts and removes against a HashMap, with colliding hashes.
    #[test]
    fn agrees_with_a_map_under_churn() {
        let mut idx = FlowIndex::new();
        let mut model: HashMap<u32, u64> = HashMap::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        for step in 0..200_000u32 {
            let r = next();
            let slot = (r % 5000) as u32;
            // few distinct low bits: long probe chains and equal tags
            let hash = (r >> 20) & 0x3ff | ((slot as u64) << 40);
            match model.get(&slot).copied() {
                Some(h) if r % 3 == 0 => {
                    assert!(idx.remove(h, slot), "step {step}");
                    model.remove(&slot);
                }
                Some(h) => assert_eq!(idx.find(h, |s| s == slot), Some(slot), "step {step}"),
                None => {
                    assert_eq!(idx.find(hash, |s| s == slot), None);
                    idx.insert(hash, slot);
                    model.insert(slot, hash);
                }
            }
            assert_eq!(idx.len(), model.len());
        }
        for (slot, h) in &model {
            assert_eq!(idx.find(*h, |s| s == *slot), Some(*slot));
        }
    }

    /// Past 2 MiB the buckets move to a huge-page-aligned array: entries
    /// survive every growth, and removals and lookups work there too.
    #[test]
    fn grows_into_huge_page_buckets() {
        let mut idx = FlowIndex::new();
        let hash = |slot: u32| u64::from(slot).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let n = 200_000u32;
        for slot in 0..n {
            idx.insert(hash(slot), slot);
        }
        assert!(idx.bytes() >= HUGE);
        assert_eq!(idx.buckets.as_ptr() as usize % HUGE, 0);
        for slot in (0..n).step_by(2) {
            assert!(idx.remove(hash(slot), slot));
        }
        for slot in 0..n {
            let want = (slot % 2 == 1).then_some(slot);
            assert_eq!(idx.find(hash(slot), |s| s == slot), want, "{slot}");
        }
        assert_eq!(idx.len(), n as usize / 2);
    }
}
