"""The ROS 2 layer of occface_ros (rclpy): a thin adapter around `occface_ros.pipeline.FacePipeline`.

Modules that import nothing from ROS (testable without rclpy): `image_conversion` (numpy side),
`parsing`, `mesh_lod`. The rest needs rclpy and the built interfaces (occface_msgs, tf2_msgs):
`messages` (message builders), `diagnostics`, `params`, `node` (the node, console script
`occface-node`), `bag` (`occface bag`), `bench` (`occface bench-ros`). See docs/ros.md.
"""
