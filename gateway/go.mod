module github.com/gpo-project/gpo/gateway

go 1.26.0

require (
	github.com/gpo-project/gpo/clients/go v0.0.0
	github.com/grpc-ecosystem/grpc-gateway/v2 v2.33.0
	google.golang.org/genproto/googleapis/api v0.0.0-20261110000943-09e21b237f2c
	google.golang.org/genproto/googleapis/rpc v0.0.0-20261104224025-d1e00e9f33ab
	google.golang.org/grpc v1.85.0
	google.golang.org/protobuf v1.36.12
)

require (
	golang.org/x/net v0.61.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)

// The Go client in this repository, generated from the same protos.
replace github.com/gpo-project/gpo/clients/go => ../clients/go
