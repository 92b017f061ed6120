"""Keyword arguments for publishers and subscriptions the node creates and destroys while an
executor spins (lifecycle transitions, REP-155 per-face topics).

rclpy gives every publisher and subscription default QoS event handlers (incompatible QoS/type
warnings), which are executor waitables. Destroying one while another executor thread builds its
wait set raises InvalidHandle in that thread and kills its spin (ros2/rclpy#1284, #1206): the node
then stops answering its services. Entities without event handlers are not waitables and are
safe to destroy at any time; the price is rclpy's incompatible-QoS log line for these topics."""
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks

DESTROYABLE_PUBLISHER = {"event_callbacks": PublisherEventCallbacks(use_default_callbacks=False)}
DESTROYABLE_SUBSCRIPTION = {"event_callbacks": SubscriptionEventCallbacks(use_default_callbacks=False)}
