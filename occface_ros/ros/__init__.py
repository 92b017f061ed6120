"""The ROS 2 layer of occface_ros (rclpy): a thin adapter around `occface_ros.pipeline.FacePipeline`.

`pipeline_protocol.FacePipelineLike` is all it asks of the core. Modules that import nothing from ROS
(testable without rclpy): `pipeline_protocol`, `loopback` (loopback-only DDS environment),
`image_conversion` (numpy side), `parsing`, `mesh_lod`. The rest needs rclpy and the built
interfaces (occface_msgs, tf2_msgs): `messages` (message builders), `outputs` (the messages of a
frame), `diagnostics`, `params`, `occface_node` (the node), `node` (the console script `occface-node`:
signals and exit codes; imports only the standard library when loaded), `bag`
(`occface bag`), `bench` (`occface bench-ros`, and its `CannedPipeline`). See docs/ros.md.
"""
