# PyTorch memory snapshots (reports/memory_snapshot*.h): the pickle writer and reader, the
# snapshot of hand-built traces, the comparison, and a fixture written as PyTorch writes it.
add_executable(snapshot_test ${CMAKE_CURRENT_SOURCE_DIR}/snapshot_test.cc)
target_link_libraries(snapshot_test PRIVATE vramsim_reports GTest::gtest_main)
target_compile_definitions(snapshot_test PRIVATE
  VRAMSIM_SNAPSHOT_DATA="${CMAKE_CURRENT_SOURCE_DIR}/data/snapshot")
gtest_discover_tests(snapshot_test TEST_PREFIX "snapshot." DISCOVERY_TIMEOUT 60)

# Writes an example's predicted step as a snapshot (test-only until the CLI has --snapshot).
add_executable(snapshot_writer ${CMAKE_CURRENT_SOURCE_DIR}/snapshot_writer.cc)
target_link_libraries(snapshot_writer PRIVATE vramsim_engine vramsim_devices vramsim_reports
                                              nlohmann_json::nlohmann_json)

# torch's own readers (Debian's torch 1.13: pickle.load, torch.cuda._memory_viz.stats) on the
# snapshots of the bundled examples; skipped (77) without torch.
add_test(NAME snapshot.torch_memory_viz
         COMMAND /usr/bin/python3 ${CMAKE_SOURCE_DIR}/validation/snapshot_check.py
                 --writer $<TARGET_FILE:snapshot_writer> --examples ${CMAKE_SOURCE_DIR}/examples)
set_tests_properties(snapshot.torch_memory_viz PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600)
