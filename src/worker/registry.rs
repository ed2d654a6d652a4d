//! Processors by name. The broker's registry ([`Processors`]) is built once at start and holds,
//! per name, how to get the processor on a shard: one value shared by every shard, or one built
//! on each shard (for per-shard state such as a connection pool, which must not cross threads).
//! Each shard turns it into its own table ([`ShardProcessors`]) when it starts. The built-in
//! operations are registered as [`BUILTIN`] and are the default unless the broker names another.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use super::{Builtin, Job, Output, ProcessError, Processor};

/// The name the built-in operations are registered under.
pub const BUILTIN: &str = "builtin";

/// The boxed future of a processor behind `dyn`.
pub(crate) type Processing<'a> = Pin<Box<dyn Future<Output = Result<Output, ProcessError>> + 'a>>;

/// [`Processor`] made object-safe: its future boxed.
pub(crate) trait DynProcessor {
    fn process<'a>(&'a self, job: &'a Job) -> Processing<'a>;
}

impl<P: Processor> DynProcessor for P {
    fn process<'a>(&'a self, job: &'a Job) -> Processing<'a> {
        Box::pin(Processor::process(self, job))
    }
}

/// One processor shared by every shard.
struct Shared<P>(Arc<P>);

impl<P: Processor> DynProcessor for Shared<P> {
    fn process<'a>(&'a self, job: &'a Job) -> Processing<'a> {
        Box::pin(self.0.process(job))
    }
}

/// How a shard gets its instance of a registered processor.
type Factory = Arc<dyn Fn() -> Rc<dyn DynProcessor> + Send + Sync>;

/// A name that no processor is registered under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownProcessor(pub String);

impl fmt::Display for UnknownProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no processor is registered as \"{}\"", self.0)
    }
}

impl std::error::Error for UnknownProcessor {}

/// The processors a broker runs, by name, and the name of the one that runs jobs that name none.
#[derive(Clone)]
pub struct Processors {
    by_name: HashMap<String, Factory>,
    default_name: String,
}

impl Default for Processors {
    fn default() -> Self {
        let mut p = Processors {
            by_name: HashMap::new(),
            default_name: BUILTIN.to_owned(),
        };
        p.register(BUILTIN, Builtin);
        p
    }
}

impl fmt::Debug for Processors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Processors")
            .field("names", &names)
            .field("default", &self.default_name)
            .finish()
    }
}

impl Processors {
    /// Registers `processor` as `name`, one value for every shard, replacing one registered
    /// under that name before.
    pub fn register<P: Processor + Send + Sync>(&mut self, name: &str, processor: P) {
        let shared = Arc::new(processor);
        let factory: Factory = Arc::new(move || Rc::new(Shared(shared.clone())));
        self.by_name.insert(name.to_owned(), factory);
    }

    /// Registers the processors `make` builds as `name`: each shard calls it once, on its own
    /// thread, and keeps what it returns (which need not be `Send`).
    pub fn register_per_shard<P, F>(&mut self, name: &str, make: F)
    where
        P: Processor,
        F: Fn() -> P + Send + Sync + 'static,
    {
        let factory: Factory = Arc::new(move || Rc::new(make()));
        self.by_name.insert(name.to_owned(), factory);
    }

    /// Makes the processor registered as `name` the one for jobs that name none.
    pub fn set_default(&mut self, name: &str) -> Result<(), UnknownProcessor> {
        if !self.contains(name) {
            return Err(UnknownProcessor(name.to_owned()));
        }
        self.default_name = name.to_owned();
        Ok(())
    }

    /// Whether a processor is registered as `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// One shard's instances of every processor. Call it on the shard's thread.
    pub fn for_shard(&self) -> ShardProcessors {
        let by_name: HashMap<String, Rc<dyn DynProcessor>> = self
            .by_name
            .iter()
            .map(|(name, make)| (name.clone(), make()))
            .collect();
        // `set_default` accepts registered names only, and registration never removes one.
        let default = by_name
            .get(&self.default_name)
            .cloned()
            .expect("the default processor is registered");
        ShardProcessors { by_name, default }
    }
}

/// One shard's processors, by name.
pub struct ShardProcessors {
    by_name: HashMap<String, Rc<dyn DynProcessor>>,
    default: Rc<dyn DynProcessor>,
}

impl ShardProcessors {
    /// The processor for a job that names `name` (the default for `None`).
    pub(crate) fn resolve(&self, name: Option<&str>) -> Result<&dyn DynProcessor, UnknownProcessor> {
        match name {
            None => Ok(&*self.default),
            Some(n) => self
                .by_name
                .get(n)
                .map(|p| &**p)
                .ok_or_else(|| UnknownProcessor(n.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;

    use super::*;

    struct Fixed(&'static str);

    impl Processor for Fixed {
        async fn process(&self, _job: &Job) -> Result<Output, ProcessError> {
            Ok(Output::json(self.0))
        }
    }

    /// Per-shard state: counts its own runs (a `Cell`, so it could not be shared).
    struct Counter(Cell<u32>);

    impl Processor for Counter {
        async fn process(&self, _job: &Job) -> Result<Output, ProcessError> {
            self.0.set(self.0.get() + 1);
            Ok(Output::json(self.0.get().to_string()))
        }
    }

    fn output(p: &dyn DynProcessor) -> Bytes {
        let job = crate::testing::job(br#"{}"#, None);
        let out = crate::testing::ready(p.process(&job));
        out.unwrap().result
    }

    #[test]
    fn resolves_by_name_and_default() {
        let mut p = Processors::default();
        assert!(p.contains(BUILTIN));
        p.register("one", Fixed("1"));
        let shard = p.for_shard();
        assert_eq!(output(shard.resolve(Some("one")).unwrap()), "1");
        assert_eq!(
            shard.resolve(Some("two")).err(),
            Some(UnknownProcessor("two".into()))
        );
        assert!(p.set_default("two").is_err());
        p.set_default("one").unwrap();
        assert_eq!(output(p.for_shard().resolve(None).unwrap()), "1");
        // Registering again under the default's name replaces the default too.
        p.register("one", Fixed("1b"));
        assert_eq!(output(p.for_shard().resolve(None).unwrap()), "1b");
    }

    #[test]
    fn per_shard_processors_are_built_once_per_shard() {
        static BUILT: AtomicUsize = AtomicUsize::new(0);
        let mut p = Processors::default();
        p.register_per_shard("count", || {
            BUILT.fetch_add(1, Ordering::Relaxed);
            Counter(Cell::new(0))
        });
        let (a, b) = (p.for_shard(), p.for_shard());
        assert_eq!(BUILT.load(Ordering::Relaxed), 2);
        // Each shard's instance keeps its own state.
        let count = |s: &ShardProcessors| output(s.resolve(Some("count")).unwrap());
        assert_eq!(count(&a), "1");
        assert_eq!(count(&a), "2");
        assert_eq!(count(&b), "1");
    }
}
