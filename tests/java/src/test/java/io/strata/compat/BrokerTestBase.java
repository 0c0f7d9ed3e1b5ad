package io.strata.compat;

import org.apache.kafka.clients.admin.Admin;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.TestInstance;

/** One broker (and an admin client on it) shared by the tests of a class. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
abstract class BrokerTestBase {
    StrataBroker broker;
    Admin admin;

    /** BrokerConfig fields for this class's broker; by default no 3 s initial rebalance delay. */
    String brokerConfig() {
        return "group_initial_rebalance_delay_ms = 0\n";
    }

    @BeforeAll
    void startBroker() throws Exception {
        broker = new StrataBroker(brokerConfig());
        admin = Clients.admin(broker.bootstrap());
    }

    @AfterAll
    void stopBroker() throws Exception {
        admin.close();
        broker.close();
    }
}
