# Unit tests of the request counters (src/lib/metrics.c); included from
# tests/CMakeLists.txt.
add_executable(test_metrics ${CMAKE_SOURCE_DIR}/tests/unit/test_metrics.c)
target_include_directories(test_metrics PRIVATE ${CMAKE_SOURCE_DIR}/src/lib)
target_link_libraries(test_metrics PRIVATE natshttp PkgConfig::CMOCKA)
add_test(NAME unit_metrics COMMAND test_metrics)
set_tests_properties(unit_metrics PROPERTIES TIMEOUT 60)
