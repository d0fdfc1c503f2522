//! The example business service: an order and its `OrderCreated` event, written in one
//! transaction so a relay can never publish an order that does not exist, nor miss one that
//! does.

use serde_json::json;
use tokio_postgres::{Client, Transaction};
use tracing::info;
use uuid::Uuid;

use crate::error::{AppError, Result};
use crate::writer::{NewEvent, OutboxWriter};

/// The aggregate type of order events (topic `outbox.event.order` by default).
pub const ORDER_AGGREGATE: &str = "order";

/// The event type written with each new order.
pub const ORDER_CREATED: &str = "OrderCreated";

/// An order to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub customer: String,
    pub amount_cents: i64,
}

/// Where [`create_order`] stops on purpose, to prove atomicity in tests and demos.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FailPoint {
    #[default]
    Never,
    /// Return [`AppError::InjectedFailure`] after the order insert, before the event.
    AfterOrderInsert,
}

/// What [`create_order`] committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreatedOrder {
    pub order_id: Uuid,
    pub event_id: Uuid,
}

/// Creates the order and its `OrderCreated` event in one transaction of its own.
pub async fn create_order(
    client: &mut Client,
    writer: &OutboxWriter,
    order: &NewOrder,
    fail: FailPoint,
) -> Result<CreatedOrder> {
    let tx = client
        .transaction()
        .await
        .map_err(AppError::pg("starting the order transaction"))?;
    // On any error `tx` is dropped, which rolls back the order insert with it.
    let created = create_order_in(&tx, writer, order, fail).await?;
    tx.commit()
        .await
        .map_err(AppError::pg("committing the order"))?;
    info!(order_id = %created.order_id, event_id = %created.event_id, "order created");
    Ok(created)
}

/// Writes the order and its event in the caller's current transaction (no commit).
pub async fn create_order_in(
    client: &Transaction<'_>,
    writer: &OutboxWriter,
    order: &NewOrder,
    fail: FailPoint,
) -> Result<CreatedOrder> {
    if order.customer.trim().is_empty() {
        return Err(AppError::InvalidConfig(
            "the customer must not be empty".into(),
        ));
    }
    if order.amount_cents < 0 {
        return Err(AppError::InvalidConfig(
            "the amount must not be negative".into(),
        ));
    }
    let order_id = Uuid::now_v7();
    client
        .execute(
            "INSERT INTO orders (id, customer, amount_cents) VALUES ($1, $2, $3)",
            &[&order_id, &order.customer, &order.amount_cents],
        )
        .await
        .map_err(AppError::pg("inserting the order"))?;
    if fail == FailPoint::AfterOrderInsert {
        return Err(AppError::InjectedFailure);
    }
    let event = NewEvent::new(
        ORDER_AGGREGATE,
        order_id.to_string(),
        ORDER_CREATED,
        json!({
            "order_id": order_id,
            "customer": order.customer,
            "amount_cents": order.amount_cents,
            "status": "created",
        }),
    );
    let event_id = writer.emit(client, &event).await?;
    Ok(CreatedOrder { order_id, event_id })
}
