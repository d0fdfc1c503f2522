//! The relation cache: what each relation OID's columns are called, per replication session.
//!
//! pgoutput sends a Relation message before the first row of a relation in a session and again
//! whenever the relation changes, so the latest Relation for an OID always describes the rows
//! that follow it. The cache therefore replaces its entry on every Relation and must start
//! empty on every new connection ([`RelationCache::clear`]): a row is only ever resolved against
//! a Relation received on the same connection.
//!
//! For speed, resolve by index: look up [`Relation::column_index`] once per Relation message
//! and then read `row.get(index)` for every row.

use std::collections::HashMap;

use crate::error::ResolveError;
use crate::message::{Column, Insert, Message, Relation, Type};
use crate::tuple::{TupleData, TupleValue};
use crate::Oid;

/// Relations and user-defined types seen on the current connection, by OID.
#[derive(Debug, Clone, Default)]
pub struct RelationCache {
    relations: HashMap<Oid, Relation>,
    types: HashMap<Oid, Type>,
}

impl RelationCache {
    pub fn new() -> Self {
        RelationCache::default()
    }

    /// Records a Relation or Type message; returns whether `message` was one.
    pub fn observe(&mut self, message: &Message) -> bool {
        match message {
            Message::Relation(relation) => {
                self.insert_relation(relation.clone());
                true
            }
            Message::Type(ty) => {
                self.insert_type(ty.clone());
                true
            }
            _ => false,
        }
    }

    /// Registers `relation`, replacing (and returning) any earlier description of its OID.
    pub fn insert_relation(&mut self, relation: Relation) -> Option<Relation> {
        self.relations.insert(relation.oid, relation)
    }

    pub fn insert_type(&mut self, ty: Type) -> Option<Type> {
        self.types.insert(ty.oid, ty)
    }

    pub fn relation(&self, oid: Oid) -> Option<&Relation> {
        self.relations.get(&oid)
    }

    pub fn type_info(&self, oid: Oid) -> Option<&Type> {
        self.types.get(&oid)
    }

    /// Number of relations known.
    pub fn len(&self) -> usize {
        self.relations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.relations.is_empty()
    }

    /// Forgets everything, as required after a reconnect.
    pub fn clear(&mut self) {
        self.relations.clear();
        self.types.clear();
    }

    /// Pairs `tuple` with the columns of relation `oid`.
    pub fn resolve<'a>(&'a self, oid: Oid, tuple: &'a TupleData) -> Result<Row<'a>, ResolveError> {
        let relation = self
            .relations
            .get(&oid)
            .ok_or(ResolveError::UnknownRelation { oid })?;
        if relation.columns.len() != tuple.len() {
            return Err(ResolveError::ColumnCountMismatch {
                oid,
                relation: format!("{}.{}", relation.namespace, relation.name),
                expected: relation.columns.len(),
                found: tuple.len(),
            });
        }
        Ok(Row { relation, tuple })
    }

    pub fn resolve_insert<'a>(&'a self, insert: &'a Insert) -> Result<Row<'a>, ResolveError> {
        self.resolve(insert.relation_oid, &insert.new)
    }
}

/// A row whose values are known to line up with its relation's columns.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    relation: &'a Relation,
    tuple: &'a TupleData,
}

impl<'a> Row<'a> {
    pub fn relation(&self) -> &'a Relation {
        self.relation
    }

    /// The value of the column called `name` (a linear scan; prefer [`Row::get`] per row).
    pub fn column(&self, name: &str) -> Option<&'a TupleValue> {
        self.get(self.relation.column_index(name)?)
    }

    pub fn get(&self, index: usize) -> Option<&'a TupleValue> {
        self.tuple.get(index)
    }

    pub fn len(&self) -> usize {
        self.tuple.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tuple.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'a Column, &'a TupleValue)> + 'a {
        self.relation.columns.iter().zip(self.tuple.iter())
    }
}
