//! Processors by name, built once at start and shared by every shard. The built-in operations
//! are registered as [`BUILTIN`] and are the default unless the broker names another.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{Builtin, Job, Output, ProcessError, Processor};

/// The name the built-in operations are registered under.
pub const BUILTIN: &str = "builtin";

/// The boxed future of a processor behind `dyn`.
pub(crate) type Processing<'a> = Pin<Box<dyn Future<Output = Result<Output, ProcessError>> + 'a>>;

/// [`Processor`] made object-safe: its future boxed.
pub(crate) trait DynProcessor: Send + Sync {
    fn process<'a>(&'a self, job: &'a Job) -> Processing<'a>;
}

impl<P: Processor> DynProcessor for P {
    fn process<'a>(&'a self, job: &'a Job) -> Processing<'a> {
        Box::pin(Processor::process(self, job))
    }
}

/// A name that no processor is registered under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownProcessor(pub String);

impl fmt::Display for UnknownProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no processor is registered as \"{}\"", self.0)
    }
}

impl std::error::Error for UnknownProcessor {}

/// The processors a broker runs, by name, and the one that runs jobs that name none.
#[derive(Clone)]
pub struct Processors {
    by_name: HashMap<String, Arc<dyn DynProcessor>>,
    default: Arc<dyn DynProcessor>,
    default_name: String,
}

impl Default for Processors {
    fn default() -> Self {
        let builtin: Arc<dyn DynProcessor> = Arc::new(Builtin);
        Processors {
            by_name: HashMap::from([(BUILTIN.to_owned(), builtin.clone())]),
            default: builtin,
            default_name: BUILTIN.to_owned(),
        }
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
    /// Registers `processor` as `name`, replacing one registered under that name before.
    pub fn register(&mut self, name: &str, processor: impl Processor) {
        let p: Arc<dyn DynProcessor> = Arc::new(processor);
        if name == self.default_name {
            self.default = p.clone();
        }
        self.by_name.insert(name.to_owned(), p);
    }

    /// Makes the processor registered as `name` the one for jobs that name none.
    pub fn set_default(&mut self, name: &str) -> Result<(), UnknownProcessor> {
        let p = self
            .by_name
            .get(name)
            .ok_or_else(|| UnknownProcessor(name.to_owned()))?;
        self.default = p.clone();
        self.default_name = name.to_owned();
        Ok(())
    }

    /// Whether a processor is registered as `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The processor for a job that names `name` (the default for `None`).
    pub(crate) fn resolve(
        &self,
        name: Option<&str>,
    ) -> Result<&dyn DynProcessor, UnknownProcessor> {
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
    use super::*;

    struct Fixed(&'static str);

    impl Processor for Fixed {
        async fn process(&self, _job: &Job) -> Result<Output, ProcessError> {
            Ok(Output::json(self.0))
        }
    }

    fn output(p: &dyn DynProcessor) -> Bytes {
        let job = crate::testing::job(br#"{}"#, None);
        let out = crate::testing::ready(p.process(&job));
        out.unwrap().result
    }

    use bytes::Bytes;

    #[test]
    fn resolves_by_name_and_default() {
        let mut p = Processors::default();
        assert!(p.contains(BUILTIN));
        assert_eq!(p.default_name, BUILTIN);
        p.register("one", Fixed("1"));
        assert_eq!(output(p.resolve(Some("one")).unwrap()), "1");
        assert_eq!(
            p.resolve(Some("two")).err(),
            Some(UnknownProcessor("two".into()))
        );
        assert!(p.set_default("two").is_err());
        p.set_default("one").unwrap();
        assert_eq!(output(p.resolve(None).unwrap()), "1");
        // Registering again under the default's name replaces the default too.
        p.register("one", Fixed("1b"));
        assert_eq!(output(p.resolve(None).unwrap()), "1b");
    }
}
