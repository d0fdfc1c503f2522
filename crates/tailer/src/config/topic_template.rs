//! The topic template (`--topic`), parsed once when the configuration is read, so a bad one
//! stops the tailer before it connects.

use crate::error::TailerError;

/// One piece of a topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Column(String),
    RoutedBy,
}

/// A parsed topic template: literal text, `${column}` and `${routedByValue}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate(Vec<Segment>);

impl TopicTemplate {
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    pub fn parse(template: &str) -> Result<TopicTemplate, TailerError> {
        let mut out = Vec::new();
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                out.push(Segment::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| {
                TailerError::Config(format!("topic template {template:?}: unclosed `${{`"))
            })?;
            let name = &after[..end];
            if name.is_empty() {
                return Err(TailerError::Config(format!(
                    "topic template {template:?}: empty `${{}}`"
                )));
            }
            out.push(if name == "routedByValue" {
                Segment::RoutedBy
            } else {
                Segment::Column(name.to_owned())
            });
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            out.push(Segment::Literal(rest.to_owned()));
        }
        Ok(TopicTemplate(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse() {
        assert_eq!(
            TopicTemplate::parse("outbox.event.${routedByValue}")
                .unwrap()
                .segments(),
            [Segment::Literal("outbox.event.".into()), Segment::RoutedBy]
        );
        assert_eq!(
            TopicTemplate::parse("${aggregatetype}-${type}")
                .unwrap()
                .segments(),
            [
                Segment::Column("aggregatetype".into()),
                Segment::Literal("-".into()),
                Segment::Column("type".into())
            ]
        );
        assert!(TopicTemplate::parse("x.${oops").is_err());
        assert!(TopicTemplate::parse("x.${}").is_err());
    }
}
