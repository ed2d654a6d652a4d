//! CPU lists as Linux writes them (`0-3,8,10-11`), for pinning shards.

use std::fmt;

use super::ConfigError;

/// An ordered list of CPU numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(Vec<usize>);

/// Largest CPU number accepted (the kernel's `NR_CPUS` upper bound).
const MAX_CPU: usize = 8191;

impl CpuList {
    /// Parses `0-3,8`. Duplicates are an error: two shards on one CPU defeat the point.
    pub fn parse(text: &str) -> Result<CpuList, ConfigError> {
        let bad = |why: &str| ConfigError(format!("server.cpus: {why} in {text:?}"));
        let mut cpus = Vec::new();
        for part in text.split(',').map(str::trim) {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let lo: usize = lo.parse().map_err(|_| bad("not a CPU number"))?;
            let hi: usize = hi.parse().map_err(|_| bad("not a CPU number"))?;
            if lo > hi || hi > MAX_CPU {
                return Err(bad("bad range"));
            }
            for cpu in lo..=hi {
                if cpus.contains(&cpu) {
                    return Err(bad("CPU listed twice"));
                }
                cpus.push(cpu);
            }
        }
        Ok(CpuList(cpus))
    }

    /// The CPU for shard `shard` (wrapping when there are more shards than CPUs).
    pub fn for_shard(&self, shard: usize) -> usize {
        self.0[shard % self.0.len()]
    }

    /// Number of CPUs listed.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no CPU is listed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The list as Linux writes it, runs of consecutive CPUs as ranges, in the list's order (which
/// is the shards' order): parses back to the same list.
impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        while i < self.0.len() {
            let mut j = i;
            while j + 1 < self.0.len() && self.0[j + 1] == self.0[j] + 1 {
                j += 1;
            }
            let sep = if i == 0 { "" } else { "," };
            if j > i {
                write!(f, "{sep}{}-{}", self.0[i], self.0[j])?;
            } else {
                write!(f, "{sep}{}", self.0[i])?;
            }
            i = j + 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_linux_cpu_lists() {
        assert_eq!(CpuList::parse("0").unwrap().0, vec![0]);
        assert_eq!(CpuList::parse("0-3,8").unwrap().0, vec![0, 1, 2, 3, 8]);
        assert_eq!(CpuList::parse(" 1 , 4-5 ").unwrap().0, vec![1, 4, 5]);
        for bad in ["", "a", "3-1", "0,0", "0-2,1", "1-", "99999", "-1"] {
            assert!(CpuList::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn displays_as_it_parses() {
        for text in ["0", "0-3,8", "3,2,1", "1,4-5,7-9"] {
            let l = CpuList::parse(text).unwrap();
            assert_eq!(l.to_string(), text);
            assert_eq!(CpuList::parse(&l.to_string()).unwrap(), l);
        }
    }

    #[test]
    fn wraps_shards_over_cpus() {
        let l = CpuList::parse("2,5").unwrap();
        assert_eq!((l.for_shard(0), l.for_shard(1), l.for_shard(2)), (2, 5, 2));
    }
}
