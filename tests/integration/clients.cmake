# clients.cmake: the example clients of client/examples (Python, Go, Node) and
# grpcurl, each against a live layerskipd, through run_client_test.py.
# Included from tests/integration/CMakeLists.txt after it defines LS_DAEMON,
# LS_MODEL, LS_PROTO_PY and LS_PROTO_DIR. Go modules and npm packages come
# from their registries on first run (module cache ~/go/pkg/mod, npm cache ~/.npm);
# tools, copies and daemon logs go to <build>/tests/integration/clients.
# LS_PYTHON, LS_GO, LS_NODE, LS_NPM and PROTOC come from cmake/LsTools.cmake,
# which stops the configure if one is missing or too old.

set(ls_client_work ${CMAKE_CURRENT_BINARY_DIR}/clients)
set(ls_client_harness ${LS_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/run_client_test.py
    --daemon ${LS_DAEMON} --model ${LS_MODEL} --proto-py ${LS_PROTO_PY} --proto-dir ${LS_PROTO_DIR}
    --examples-dir ${PROJECT_SOURCE_DIR}/client/examples --work-dir ${ls_client_work}
    --go ${LS_GO} --node ${LS_NODE} --npm ${LS_NPM} --protoc ${PROTOC})

# Python over a unix socket, Node with a bearer token, Go and grpcurl plain TCP:
# each transport/auth path of the daemon gets one client.
add_test(NAME client_python COMMAND ${ls_client_harness} --client python --transport unix)
add_test(NAME client_go COMMAND ${ls_client_harness} --client go)
add_test(NAME client_node COMMAND ${ls_client_harness} --client node --token)
add_test(NAME client_grpcurl COMMAND ${ls_client_harness} --client grpcurl)
# first run downloads modules (grpcurl: ~2 min of go install on 2 cores)
set_tests_properties(client_python client_go client_node client_grpcurl PROPERTIES
  TIMEOUT 900 LABELS "integration;clients")
