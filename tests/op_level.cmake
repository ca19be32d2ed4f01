# Op-level checkpointing: the simulator's op-level regions by hand on a tiny graph, the
# --checkpoint syntax, the min cut, and the op-level strategies' plans replayed on the examples.
add_executable(op_level_test ${CMAKE_CURRENT_SOURCE_DIR}/op_level_test.cc)
target_link_libraries(op_level_test PRIVATE vramsim_planner GTest::gtest_main)
target_compile_definitions(op_level_test PRIVATE VRAMSIM_EXAMPLES="${CMAKE_SOURCE_DIR}/examples")
gtest_discover_tests(op_level_test TEST_PREFIX "op_level." DISCOVERY_TIMEOUT 60)
