// Package secretfile reads the shared tokens apisessions is given as files
// (server.api_token_file, server.grpc_token_file) and refuses files that anyone but their
// owner may read. It imports nothing of apisessions.
package secretfile
