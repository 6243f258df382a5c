//! One sink for a command's warnings (issue 24): configuration, store, discovery and the loopback listener push
//! into it wherever they notice something; `Deps` prints each distinct warning once, before the next line it
//! writes and when the command ends. No use case has to remember to flush.

use std::cell::RefCell;
use std::rc::Rc;

/// A shared handle to the sink; clones push into the same one.
#[derive(Clone, Default)]
pub struct Warnings(Rc<RefCell<Inner>>);

#[derive(Default)]
struct Inner {
    pending: Vec<String>,
    said: Vec<String>,
}

impl Warnings {
    /// Add a warning (without the `warning: ` prefix); one already given is not repeated.
    pub fn push(&self, warning: impl Into<String>) {
        let w = warning.into();
        let mut inner = self.0.borrow_mut();
        if !inner.said.contains(&w) && !inner.pending.contains(&w) {
            inner.pending.push(w);
        }
    }

    /// The warnings not yet printed, which count as said from now on.
    pub fn take(&self) -> Vec<String> {
        let mut inner = self.0.borrow_mut();
        let taken = std::mem::take(&mut inner.pending);
        inner.said.extend(taken.iter().cloned());
        taken
    }
}

impl std::fmt::Debug for Warnings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.borrow().pending.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_warning_is_given_once_whoever_pushes_it() {
        let sink = Warnings::default();
        let store_side = sink.clone();
        sink.push("a");
        store_side.push("a");
        store_side.push("b");
        assert_eq!(sink.take(), ["a", "b"]);
        store_side.push("a");
        assert!(sink.take().is_empty(), "said once already");
    }
}
