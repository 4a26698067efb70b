//! Conversation storage: every sent user message and every reply, keyed by id, linked by
//! `parent_message_id`, so a later call can rebuild history by walking the chain.
//!
//! The default store is a bounded in-memory cache (quick_cache, S3-FIFO eviction, lock-striped so
//! concurrent calls do not serialise on one mutex). Messages are `Arc`s: history walks clone
//! pointers, not text.

use std::sync::Arc;

use quick_cache::sync::Cache;

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: String,
    pub role: String,
    pub text: String,
    pub name: Option<String>,
    pub parent_message_id: Option<String>,
    pub conversation_id: Option<String>,
}

/// Bounded in-memory message store.
pub struct MessageStore {
    cache: Cache<String, Arc<StoredMessage>>,
}

impl MessageStore {
    /// A store that keeps at most `capacity` messages, evicting the least useful first.
    pub fn new(capacity: usize) -> Self {
        MessageStore {
            cache: Cache::new(capacity.max(1)),
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<StoredMessage>> {
        self.cache.get(id)
    }

    pub fn upsert(&self, message: StoredMessage) {
        self.cache.insert(message.id.clone(), Arc::new(message));
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, parent: Option<&str>) -> StoredMessage {
        StoredMessage {
            id: id.into(),
            role: "user".into(),
            text: format!("text of {id}"),
            name: None,
            parent_message_id: parent.map(str::to_owned),
            conversation_id: None,
        }
    }

    #[test]
    fn stored_messages_link_to_their_parents() {
        let store = MessageStore::new(10);
        store.upsert(msg("a", None));
        store.upsert(msg("b", Some("a")));
        let b = store.get("b").unwrap();
        let a = store.get(b.parent_message_id.as_deref().unwrap()).unwrap();
        assert_eq!(a.text, "text of a");
    }

    #[test]
    fn the_store_is_bounded() {
        let store = MessageStore::new(100);
        for i in 0..1000 {
            store.upsert(msg(&i.to_string(), None));
        }
        assert!(store.len() <= 100, "len {}", store.len());
        assert!(store.get("999").is_some(), "the newest survives");
    }
}
