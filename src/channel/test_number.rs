//! Where messages to test numbers (`[test_numbers]`) go: nowhere. The try is recorded on this
//! channel, so that a verification's deliveries show that nothing left the machine.

use async_trait::async_trait;

use super::{Accepted, Channel, Outgoing, SendError};
use crate::config::delivery::TEST_NUMBER;

pub struct TestNumberChannel;

#[async_trait]
impl Channel for TestNumberChannel {
    fn name(&self) -> &str {
        TEST_NUMBER
    }

    async fn send(&self, message: &Outgoing) -> Result<Accepted, SendError> {
        Ok(Accepted {
            message_id: format!("not-sent-{}", message.id.as_str()),
            delivered: false,
        })
    }
}
