package org.gpo.v1;

import static io.grpc.MethodDescriptor.generateFullMethodName;

/**
 * <pre>
 * The G2P Connect v1.0.0 disbursement interface (disburse_core_api_v1.0.0.yaml), served by the REST
 * gateway on the spec's own paths. Every RPC takes and returns google.api.HttpBody: a G2P Connect message
 * is signed over the exact bytes its sender sent, so the JSON must reach GPO's verifier unchanged;
 * re-serialised JSON would not verify. The gateway forwards the HTTP `Signature` header as metadata.
 * JSON bodies, field names and codes are the spec's; docs/G2P_CONNECT.md maps them to GPO.
 * HttpBody.content_type: at most 255 characters (INVALID_ARGUMENT, reason FIELD_TOO_LONG, beyond).
 * The requests and responses are HttpBody rather than "&lt;Rpc&gt;Request" and "&lt;Rpc&gt;Response" messages (see
 * above), hence the lint exceptions on each RPC.
 * </pre>
 */
@io.grpc.stub.annotations.GrpcGenerated
public final class G2pConnectServiceGrpc {

  private G2pConnectServiceGrpc() {}

  public static final java.lang.String SERVICE_NAME = "gpo.v1.G2pConnectService";

  // Static method descriptors that strictly reflect the proto.
  private static volatile io.grpc.MethodDescriptor<com.google.api.HttpBody,
      com.google.api.HttpBody> getDisburseMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "Disburse",
      requestType = com.google.api.HttpBody.class,
      responseType = com.google.api.HttpBody.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<com.google.api.HttpBody,
      com.google.api.HttpBody> getDisburseMethod() {
    io.grpc.MethodDescriptor<com.google.api.HttpBody, com.google.api.HttpBody> getDisburseMethod;
    if ((getDisburseMethod = G2pConnectServiceGrpc.getDisburseMethod) == null) {
      synchronized (G2pConnectServiceGrpc.class) {
        if ((getDisburseMethod = G2pConnectServiceGrpc.getDisburseMethod) == null) {
          G2pConnectServiceGrpc.getDisburseMethod = getDisburseMethod =
              io.grpc.MethodDescriptor.<com.google.api.HttpBody, com.google.api.HttpBody>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "Disburse"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.google.api.HttpBody.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.google.api.HttpBody.getDefaultInstance()))
              .setSchemaDescriptor(new G2pConnectServiceMethodDescriptorSupplier("Disburse"))
              .build();
        }
      }
    }
    return getDisburseMethod;
  }

  private static volatile io.grpc.MethodDescriptor<com.google.api.HttpBody,
      com.google.api.HttpBody> getTxnStatusMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "TxnStatus",
      requestType = com.google.api.HttpBody.class,
      responseType = com.google.api.HttpBody.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<com.google.api.HttpBody,
      com.google.api.HttpBody> getTxnStatusMethod() {
    io.grpc.MethodDescriptor<com.google.api.HttpBody, com.google.api.HttpBody> getTxnStatusMethod;
    if ((getTxnStatusMethod = G2pConnectServiceGrpc.getTxnStatusMethod) == null) {
      synchronized (G2pConnectServiceGrpc.class) {
        if ((getTxnStatusMethod = G2pConnectServiceGrpc.getTxnStatusMethod) == null) {
          G2pConnectServiceGrpc.getTxnStatusMethod = getTxnStatusMethod =
              io.grpc.MethodDescriptor.<com.google.api.HttpBody, com.google.api.HttpBody>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "TxnStatus"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.google.api.HttpBody.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.google.api.HttpBody.getDefaultInstance()))
              .setSchemaDescriptor(new G2pConnectServiceMethodDescriptorSupplier("TxnStatus"))
              .build();
        }
      }
    }
    return getTxnStatusMethod;
  }

  private static volatile io.grpc.MethodDescriptor<com.google.api.HttpBody,
      com.google.api.HttpBody> getSearchMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "Search",
      requestType = com.google.api.HttpBody.class,
      responseType = com.google.api.HttpBody.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<com.google.api.HttpBody,
      com.google.api.HttpBody> getSearchMethod() {
    io.grpc.MethodDescriptor<com.google.api.HttpBody, com.google.api.HttpBody> getSearchMethod;
    if ((getSearchMethod = G2pConnectServiceGrpc.getSearchMethod) == null) {
      synchronized (G2pConnectServiceGrpc.class) {
        if ((getSearchMethod = G2pConnectServiceGrpc.getSearchMethod) == null) {
          G2pConnectServiceGrpc.getSearchMethod = getSearchMethod =
              io.grpc.MethodDescriptor.<com.google.api.HttpBody, com.google.api.HttpBody>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "Search"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.google.api.HttpBody.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.google.api.HttpBody.getDefaultInstance()))
              .setSchemaDescriptor(new G2pConnectServiceMethodDescriptorSupplier("Search"))
              .build();
        }
      }
    }
    return getSearchMethod;
  }

  private static volatile io.grpc.MethodDescriptor<com.google.api.HttpBody,
      com.google.api.HttpBody> getSyncDisburseMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "SyncDisburse",
      requestType = com.google.api.HttpBody.class,
      responseType = com.google.api.HttpBody.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<com.google.api.HttpBody,
      com.google.api.HttpBody> getSyncDisburseMethod() {
    io.grpc.MethodDescriptor<com.google.api.HttpBody, com.google.api.HttpBody> getSyncDisburseMethod;
    if ((getSyncDisburseMethod = G2pConnectServiceGrpc.getSyncDisburseMethod) == null) {
      synchronized (G2pConnectServiceGrpc.class) {
        if ((getSyncDisburseMethod = G2pConnectServiceGrpc.getSyncDisburseMethod) == null) {
          G2pConnectServiceGrpc.getSyncDisburseMethod = getSyncDisburseMethod =
              io.grpc.MethodDescriptor.<com.google.api.HttpBody, com.google.api.HttpBody>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "SyncDisburse"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.google.api.HttpBody.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.google.api.HttpBody.getDefaultInstance()))
              .setSchemaDescriptor(new G2pConnectServiceMethodDescriptorSupplier("SyncDisburse"))
              .build();
        }
      }
    }
    return getSyncDisburseMethod;
  }

  private static volatile io.grpc.MethodDescriptor<com.google.api.HttpBody,
      com.google.api.HttpBody> getSyncTxnStatusMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "SyncTxnStatus",
      requestType = com.google.api.HttpBody.class,
      responseType = com.google.api.HttpBody.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<com.google.api.HttpBody,
      com.google.api.HttpBody> getSyncTxnStatusMethod() {
    io.grpc.MethodDescriptor<com.google.api.HttpBody, com.google.api.HttpBody> getSyncTxnStatusMethod;
    if ((getSyncTxnStatusMethod = G2pConnectServiceGrpc.getSyncTxnStatusMethod) == null) {
      synchronized (G2pConnectServiceGrpc.class) {
        if ((getSyncTxnStatusMethod = G2pConnectServiceGrpc.getSyncTxnStatusMethod) == null) {
          G2pConnectServiceGrpc.getSyncTxnStatusMethod = getSyncTxnStatusMethod =
              io.grpc.MethodDescriptor.<com.google.api.HttpBody, com.google.api.HttpBody>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "SyncTxnStatus"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.google.api.HttpBody.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.google.api.HttpBody.getDefaultInstance()))
              .setSchemaDescriptor(new G2pConnectServiceMethodDescriptorSupplier("SyncTxnStatus"))
              .build();
        }
      }
    }
    return getSyncTxnStatusMethod;
  }

  private static volatile io.grpc.MethodDescriptor<com.google.api.HttpBody,
      com.google.api.HttpBody> getSyncSearchMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "SyncSearch",
      requestType = com.google.api.HttpBody.class,
      responseType = com.google.api.HttpBody.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<com.google.api.HttpBody,
      com.google.api.HttpBody> getSyncSearchMethod() {
    io.grpc.MethodDescriptor<com.google.api.HttpBody, com.google.api.HttpBody> getSyncSearchMethod;
    if ((getSyncSearchMethod = G2pConnectServiceGrpc.getSyncSearchMethod) == null) {
      synchronized (G2pConnectServiceGrpc.class) {
        if ((getSyncSearchMethod = G2pConnectServiceGrpc.getSyncSearchMethod) == null) {
          G2pConnectServiceGrpc.getSyncSearchMethod = getSyncSearchMethod =
              io.grpc.MethodDescriptor.<com.google.api.HttpBody, com.google.api.HttpBody>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "SyncSearch"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.google.api.HttpBody.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.google.api.HttpBody.getDefaultInstance()))
              .setSchemaDescriptor(new G2pConnectServiceMethodDescriptorSupplier("SyncSearch"))
              .build();
        }
      }
    }
    return getSyncSearchMethod;
  }

  private static volatile io.grpc.MethodDescriptor<com.google.api.HttpBody,
      com.google.api.HttpBody> getGetJwksMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "GetJwks",
      requestType = com.google.api.HttpBody.class,
      responseType = com.google.api.HttpBody.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<com.google.api.HttpBody,
      com.google.api.HttpBody> getGetJwksMethod() {
    io.grpc.MethodDescriptor<com.google.api.HttpBody, com.google.api.HttpBody> getGetJwksMethod;
    if ((getGetJwksMethod = G2pConnectServiceGrpc.getGetJwksMethod) == null) {
      synchronized (G2pConnectServiceGrpc.class) {
        if ((getGetJwksMethod = G2pConnectServiceGrpc.getGetJwksMethod) == null) {
          G2pConnectServiceGrpc.getGetJwksMethod = getGetJwksMethod =
              io.grpc.MethodDescriptor.<com.google.api.HttpBody, com.google.api.HttpBody>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "GetJwks"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.google.api.HttpBody.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.google.api.HttpBody.getDefaultInstance()))
              .setSchemaDescriptor(new G2pConnectServiceMethodDescriptorSupplier("GetJwks"))
              .build();
        }
      }
    }
    return getGetJwksMethod;
  }

  private static volatile io.grpc.MethodDescriptor<com.google.api.HttpBody,
      com.google.api.HttpBody> getOnResolveMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "OnResolve",
      requestType = com.google.api.HttpBody.class,
      responseType = com.google.api.HttpBody.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<com.google.api.HttpBody,
      com.google.api.HttpBody> getOnResolveMethod() {
    io.grpc.MethodDescriptor<com.google.api.HttpBody, com.google.api.HttpBody> getOnResolveMethod;
    if ((getOnResolveMethod = G2pConnectServiceGrpc.getOnResolveMethod) == null) {
      synchronized (G2pConnectServiceGrpc.class) {
        if ((getOnResolveMethod = G2pConnectServiceGrpc.getOnResolveMethod) == null) {
          G2pConnectServiceGrpc.getOnResolveMethod = getOnResolveMethod =
              io.grpc.MethodDescriptor.<com.google.api.HttpBody, com.google.api.HttpBody>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "OnResolve"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.google.api.HttpBody.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.google.api.HttpBody.getDefaultInstance()))
              .setSchemaDescriptor(new G2pConnectServiceMethodDescriptorSupplier("OnResolve"))
              .build();
        }
      }
    }
    return getOnResolveMethod;
  }

  /**
   * Creates a new async stub that supports all call types for the service
   */
  public static G2pConnectServiceStub newStub(io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<G2pConnectServiceStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<G2pConnectServiceStub>() {
        @java.lang.Override
        public G2pConnectServiceStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new G2pConnectServiceStub(channel, callOptions);
        }
      };
    return G2pConnectServiceStub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports all types of calls on the service
   */
  public static G2pConnectServiceBlockingV2Stub newBlockingV2Stub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<G2pConnectServiceBlockingV2Stub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<G2pConnectServiceBlockingV2Stub>() {
        @java.lang.Override
        public G2pConnectServiceBlockingV2Stub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new G2pConnectServiceBlockingV2Stub(channel, callOptions);
        }
      };
    return G2pConnectServiceBlockingV2Stub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports unary and streaming output calls on the service
   */
  public static G2pConnectServiceBlockingStub newBlockingStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<G2pConnectServiceBlockingStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<G2pConnectServiceBlockingStub>() {
        @java.lang.Override
        public G2pConnectServiceBlockingStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new G2pConnectServiceBlockingStub(channel, callOptions);
        }
      };
    return G2pConnectServiceBlockingStub.newStub(factory, channel);
  }

  /**
   * Creates a new ListenableFuture-style stub that supports unary calls on the service
   */
  public static G2pConnectServiceFutureStub newFutureStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<G2pConnectServiceFutureStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<G2pConnectServiceFutureStub>() {
        @java.lang.Override
        public G2pConnectServiceFutureStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new G2pConnectServiceFutureStub(channel, callOptions);
        }
      };
    return G2pConnectServiceFutureStub.newStub(factory, channel);
  }

  /**
   * <pre>
   * The G2P Connect v1.0.0 disbursement interface (disburse_core_api_v1.0.0.yaml), served by the REST
   * gateway on the spec's own paths. Every RPC takes and returns google.api.HttpBody: a G2P Connect message
   * is signed over the exact bytes its sender sent, so the JSON must reach GPO's verifier unchanged;
   * re-serialised JSON would not verify. The gateway forwards the HTTP `Signature` header as metadata.
   * JSON bodies, field names and codes are the spec's; docs/G2P_CONNECT.md maps them to GPO.
   * HttpBody.content_type: at most 255 characters (INVALID_ARGUMENT, reason FIELD_TOO_LONG, beyond).
   * The requests and responses are HttpBody rather than "&lt;Rpc&gt;Request" and "&lt;Rpc&gt;Response" messages (see
   * above), hence the lint exceptions on each RPC.
   * </pre>
   */
  public interface AsyncService {

    /**
     * <pre>
     * Async disburse: validates, stores the disbursements as a GPO batch and answers at once with the
     * spec's ACK / NACK / ERR envelope; the outcome of each payment follows as on-disburse callbacks.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    default void disburse(com.google.api.HttpBody request,
        io.grpc.stub.StreamObserver<com.google.api.HttpBody> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getDisburseMethod(), responseObserver);
    }

    /**
     * <pre>
     * Async transaction status: answered at once, the result follows as a txn/on-status callback.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    default void txnStatus(com.google.api.HttpBody request,
        io.grpc.stub.StreamObserver<com.google.api.HttpBody> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getTxnStatusMethod(), responseObserver);
    }

    /**
     * <pre>
     * Async search: answered at once, the result follows as an on-search callback.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    default void search(com.google.api.HttpBody request,
        io.grpc.stub.StreamObserver<com.google.api.HttpBody> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getSearchMethod(), responseObserver);
    }

    /**
     * <pre>
     * Sync disburse: the reply holds each payment's status at intake (rcvd, or rjct with a reason).
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    default void syncDisburse(com.google.api.HttpBody request,
        io.grpc.stub.StreamObserver<com.google.api.HttpBody> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getSyncDisburseMethod(), responseObserver);
    }

    /**
     * <pre>
     * Sync transaction status.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    default void syncTxnStatus(com.google.api.HttpBody request,
        io.grpc.stub.StreamObserver<com.google.api.HttpBody> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getSyncTxnStatusMethod(), responseObserver);
    }

    /**
     * <pre>
     * Sync search.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    default void syncSearch(com.google.api.HttpBody request,
        io.grpc.stub.StreamObserver<com.google.api.HttpBody> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getSyncSearchMethod(), responseObserver);
    }

    /**
     * <pre>
     * GPO's public signing keys as a JWKS document (RFC 7517), the key that signs now first: partners
     * verify GPO's detached-JWS callbacks and mapper requests with it. Public: no bearer token needed.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    default void getJwks(com.google.api.HttpBody request,
        io.grpc.stub.StreamObserver<com.google.api.HttpBody> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getGetJwksMethod(), responseObserver);
    }

    /**
     * <pre>
     * The ID mapper's on-resolve callback (mapper_core_api_v1.0.0.yaml) answering GPO's asynchronous
     * /mapper/resolve; GPO gives the mapper "{gateway}/mapper" as sender_uri.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    default void onResolve(com.google.api.HttpBody request,
        io.grpc.stub.StreamObserver<com.google.api.HttpBody> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getOnResolveMethod(), responseObserver);
    }
  }

  /**
   * Base class for the server implementation of the service G2pConnectService.
   * <pre>
   * The G2P Connect v1.0.0 disbursement interface (disburse_core_api_v1.0.0.yaml), served by the REST
   * gateway on the spec's own paths. Every RPC takes and returns google.api.HttpBody: a G2P Connect message
   * is signed over the exact bytes its sender sent, so the JSON must reach GPO's verifier unchanged;
   * re-serialised JSON would not verify. The gateway forwards the HTTP `Signature` header as metadata.
   * JSON bodies, field names and codes are the spec's; docs/G2P_CONNECT.md maps them to GPO.
   * HttpBody.content_type: at most 255 characters (INVALID_ARGUMENT, reason FIELD_TOO_LONG, beyond).
   * The requests and responses are HttpBody rather than "&lt;Rpc&gt;Request" and "&lt;Rpc&gt;Response" messages (see
   * above), hence the lint exceptions on each RPC.
   * </pre>
   */
  public static abstract class G2pConnectServiceImplBase
      implements io.grpc.BindableService, AsyncService {

    @java.lang.Override public final io.grpc.ServerServiceDefinition bindService() {
      return G2pConnectServiceGrpc.bindService(this);
    }
  }

  /**
   * A stub to allow clients to do asynchronous rpc calls to service G2pConnectService.
   * <pre>
   * The G2P Connect v1.0.0 disbursement interface (disburse_core_api_v1.0.0.yaml), served by the REST
   * gateway on the spec's own paths. Every RPC takes and returns google.api.HttpBody: a G2P Connect message
   * is signed over the exact bytes its sender sent, so the JSON must reach GPO's verifier unchanged;
   * re-serialised JSON would not verify. The gateway forwards the HTTP `Signature` header as metadata.
   * JSON bodies, field names and codes are the spec's; docs/G2P_CONNECT.md maps them to GPO.
   * HttpBody.content_type: at most 255 characters (INVALID_ARGUMENT, reason FIELD_TOO_LONG, beyond).
   * The requests and responses are HttpBody rather than "&lt;Rpc&gt;Request" and "&lt;Rpc&gt;Response" messages (see
   * above), hence the lint exceptions on each RPC.
   * </pre>
   */
  public static final class G2pConnectServiceStub
      extends io.grpc.stub.AbstractAsyncStub<G2pConnectServiceStub> {
    private G2pConnectServiceStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected G2pConnectServiceStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new G2pConnectServiceStub(channel, callOptions);
    }

    /**
     * <pre>
     * Async disburse: validates, stores the disbursements as a GPO batch and answers at once with the
     * spec's ACK / NACK / ERR envelope; the outcome of each payment follows as on-disburse callbacks.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public void disburse(com.google.api.HttpBody request,
        io.grpc.stub.StreamObserver<com.google.api.HttpBody> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getDisburseMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Async transaction status: answered at once, the result follows as a txn/on-status callback.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public void txnStatus(com.google.api.HttpBody request,
        io.grpc.stub.StreamObserver<com.google.api.HttpBody> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getTxnStatusMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Async search: answered at once, the result follows as an on-search callback.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public void search(com.google.api.HttpBody request,
        io.grpc.stub.StreamObserver<com.google.api.HttpBody> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getSearchMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Sync disburse: the reply holds each payment's status at intake (rcvd, or rjct with a reason).
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public void syncDisburse(com.google.api.HttpBody request,
        io.grpc.stub.StreamObserver<com.google.api.HttpBody> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getSyncDisburseMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Sync transaction status.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public void syncTxnStatus(com.google.api.HttpBody request,
        io.grpc.stub.StreamObserver<com.google.api.HttpBody> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getSyncTxnStatusMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Sync search.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public void syncSearch(com.google.api.HttpBody request,
        io.grpc.stub.StreamObserver<com.google.api.HttpBody> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getSyncSearchMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * GPO's public signing keys as a JWKS document (RFC 7517), the key that signs now first: partners
     * verify GPO's detached-JWS callbacks and mapper requests with it. Public: no bearer token needed.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public void getJwks(com.google.api.HttpBody request,
        io.grpc.stub.StreamObserver<com.google.api.HttpBody> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getGetJwksMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * The ID mapper's on-resolve callback (mapper_core_api_v1.0.0.yaml) answering GPO's asynchronous
     * /mapper/resolve; GPO gives the mapper "{gateway}/mapper" as sender_uri.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public void onResolve(com.google.api.HttpBody request,
        io.grpc.stub.StreamObserver<com.google.api.HttpBody> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getOnResolveMethod(), getCallOptions()), request, responseObserver);
    }
  }

  /**
   * A stub to allow clients to do synchronous rpc calls to service G2pConnectService.
   * <pre>
   * The G2P Connect v1.0.0 disbursement interface (disburse_core_api_v1.0.0.yaml), served by the REST
   * gateway on the spec's own paths. Every RPC takes and returns google.api.HttpBody: a G2P Connect message
   * is signed over the exact bytes its sender sent, so the JSON must reach GPO's verifier unchanged;
   * re-serialised JSON would not verify. The gateway forwards the HTTP `Signature` header as metadata.
   * JSON bodies, field names and codes are the spec's; docs/G2P_CONNECT.md maps them to GPO.
   * HttpBody.content_type: at most 255 characters (INVALID_ARGUMENT, reason FIELD_TOO_LONG, beyond).
   * The requests and responses are HttpBody rather than "&lt;Rpc&gt;Request" and "&lt;Rpc&gt;Response" messages (see
   * above), hence the lint exceptions on each RPC.
   * </pre>
   */
  public static final class G2pConnectServiceBlockingV2Stub
      extends io.grpc.stub.AbstractBlockingStub<G2pConnectServiceBlockingV2Stub> {
    private G2pConnectServiceBlockingV2Stub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected G2pConnectServiceBlockingV2Stub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new G2pConnectServiceBlockingV2Stub(channel, callOptions);
    }

    /**
     * <pre>
     * Async disburse: validates, stores the disbursements as a GPO batch and answers at once with the
     * spec's ACK / NACK / ERR envelope; the outcome of each payment follows as on-disburse callbacks.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.api.HttpBody disburse(com.google.api.HttpBody request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getDisburseMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Async transaction status: answered at once, the result follows as a txn/on-status callback.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.api.HttpBody txnStatus(com.google.api.HttpBody request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getTxnStatusMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Async search: answered at once, the result follows as an on-search callback.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.api.HttpBody search(com.google.api.HttpBody request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getSearchMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Sync disburse: the reply holds each payment's status at intake (rcvd, or rjct with a reason).
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.api.HttpBody syncDisburse(com.google.api.HttpBody request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getSyncDisburseMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Sync transaction status.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.api.HttpBody syncTxnStatus(com.google.api.HttpBody request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getSyncTxnStatusMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Sync search.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.api.HttpBody syncSearch(com.google.api.HttpBody request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getSyncSearchMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * GPO's public signing keys as a JWKS document (RFC 7517), the key that signs now first: partners
     * verify GPO's detached-JWS callbacks and mapper requests with it. Public: no bearer token needed.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.api.HttpBody getJwks(com.google.api.HttpBody request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getGetJwksMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * The ID mapper's on-resolve callback (mapper_core_api_v1.0.0.yaml) answering GPO's asynchronous
     * /mapper/resolve; GPO gives the mapper "{gateway}/mapper" as sender_uri.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.api.HttpBody onResolve(com.google.api.HttpBody request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getOnResolveMethod(), getCallOptions(), request);
    }
  }

  /**
   * A stub to allow clients to do limited synchronous rpc calls to service G2pConnectService.
   * <pre>
   * The G2P Connect v1.0.0 disbursement interface (disburse_core_api_v1.0.0.yaml), served by the REST
   * gateway on the spec's own paths. Every RPC takes and returns google.api.HttpBody: a G2P Connect message
   * is signed over the exact bytes its sender sent, so the JSON must reach GPO's verifier unchanged;
   * re-serialised JSON would not verify. The gateway forwards the HTTP `Signature` header as metadata.
   * JSON bodies, field names and codes are the spec's; docs/G2P_CONNECT.md maps them to GPO.
   * HttpBody.content_type: at most 255 characters (INVALID_ARGUMENT, reason FIELD_TOO_LONG, beyond).
   * The requests and responses are HttpBody rather than "&lt;Rpc&gt;Request" and "&lt;Rpc&gt;Response" messages (see
   * above), hence the lint exceptions on each RPC.
   * </pre>
   */
  public static final class G2pConnectServiceBlockingStub
      extends io.grpc.stub.AbstractBlockingStub<G2pConnectServiceBlockingStub> {
    private G2pConnectServiceBlockingStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected G2pConnectServiceBlockingStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new G2pConnectServiceBlockingStub(channel, callOptions);
    }

    /**
     * <pre>
     * Async disburse: validates, stores the disbursements as a GPO batch and answers at once with the
     * spec's ACK / NACK / ERR envelope; the outcome of each payment follows as on-disburse callbacks.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.api.HttpBody disburse(com.google.api.HttpBody request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getDisburseMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Async transaction status: answered at once, the result follows as a txn/on-status callback.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.api.HttpBody txnStatus(com.google.api.HttpBody request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getTxnStatusMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Async search: answered at once, the result follows as an on-search callback.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.api.HttpBody search(com.google.api.HttpBody request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getSearchMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Sync disburse: the reply holds each payment's status at intake (rcvd, or rjct with a reason).
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.api.HttpBody syncDisburse(com.google.api.HttpBody request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getSyncDisburseMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Sync transaction status.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.api.HttpBody syncTxnStatus(com.google.api.HttpBody request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getSyncTxnStatusMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Sync search.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.api.HttpBody syncSearch(com.google.api.HttpBody request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getSyncSearchMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * GPO's public signing keys as a JWKS document (RFC 7517), the key that signs now first: partners
     * verify GPO's detached-JWS callbacks and mapper requests with it. Public: no bearer token needed.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.api.HttpBody getJwks(com.google.api.HttpBody request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getGetJwksMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * The ID mapper's on-resolve callback (mapper_core_api_v1.0.0.yaml) answering GPO's asynchronous
     * /mapper/resolve; GPO gives the mapper "{gateway}/mapper" as sender_uri.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.api.HttpBody onResolve(com.google.api.HttpBody request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getOnResolveMethod(), getCallOptions(), request);
    }
  }

  /**
   * A stub to allow clients to do ListenableFuture-style rpc calls to service G2pConnectService.
   * <pre>
   * The G2P Connect v1.0.0 disbursement interface (disburse_core_api_v1.0.0.yaml), served by the REST
   * gateway on the spec's own paths. Every RPC takes and returns google.api.HttpBody: a G2P Connect message
   * is signed over the exact bytes its sender sent, so the JSON must reach GPO's verifier unchanged;
   * re-serialised JSON would not verify. The gateway forwards the HTTP `Signature` header as metadata.
   * JSON bodies, field names and codes are the spec's; docs/G2P_CONNECT.md maps them to GPO.
   * HttpBody.content_type: at most 255 characters (INVALID_ARGUMENT, reason FIELD_TOO_LONG, beyond).
   * The requests and responses are HttpBody rather than "&lt;Rpc&gt;Request" and "&lt;Rpc&gt;Response" messages (see
   * above), hence the lint exceptions on each RPC.
   * </pre>
   */
  public static final class G2pConnectServiceFutureStub
      extends io.grpc.stub.AbstractFutureStub<G2pConnectServiceFutureStub> {
    private G2pConnectServiceFutureStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected G2pConnectServiceFutureStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new G2pConnectServiceFutureStub(channel, callOptions);
    }

    /**
     * <pre>
     * Async disburse: validates, stores the disbursements as a GPO batch and answers at once with the
     * spec's ACK / NACK / ERR envelope; the outcome of each payment follows as on-disburse callbacks.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<com.google.api.HttpBody> disburse(
        com.google.api.HttpBody request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getDisburseMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Async transaction status: answered at once, the result follows as a txn/on-status callback.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<com.google.api.HttpBody> txnStatus(
        com.google.api.HttpBody request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getTxnStatusMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Async search: answered at once, the result follows as an on-search callback.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<com.google.api.HttpBody> search(
        com.google.api.HttpBody request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getSearchMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Sync disburse: the reply holds each payment's status at intake (rcvd, or rjct with a reason).
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<com.google.api.HttpBody> syncDisburse(
        com.google.api.HttpBody request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getSyncDisburseMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Sync transaction status.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<com.google.api.HttpBody> syncTxnStatus(
        com.google.api.HttpBody request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getSyncTxnStatusMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Sync search.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<com.google.api.HttpBody> syncSearch(
        com.google.api.HttpBody request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getSyncSearchMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * GPO's public signing keys as a JWKS document (RFC 7517), the key that signs now first: partners
     * verify GPO's detached-JWS callbacks and mapper requests with it. Public: no bearer token needed.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<com.google.api.HttpBody> getJwks(
        com.google.api.HttpBody request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getGetJwksMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * The ID mapper's on-resolve callback (mapper_core_api_v1.0.0.yaml) answering GPO's asynchronous
     * /mapper/resolve; GPO gives the mapper "{gateway}/mapper" as sender_uri.
     * buf:lint:ignore RPC_REQUEST_STANDARD_NAME
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<com.google.api.HttpBody> onResolve(
        com.google.api.HttpBody request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getOnResolveMethod(), getCallOptions()), request);
    }
  }

  private static final int METHODID_DISBURSE = 0;
  private static final int METHODID_TXN_STATUS = 1;
  private static final int METHODID_SEARCH = 2;
  private static final int METHODID_SYNC_DISBURSE = 3;
  private static final int METHODID_SYNC_TXN_STATUS = 4;
  private static final int METHODID_SYNC_SEARCH = 5;
  private static final int METHODID_GET_JWKS = 6;
  private static final int METHODID_ON_RESOLVE = 7;

  private static final class MethodHandlers<Req, Resp> implements
      io.grpc.stub.ServerCalls.UnaryMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ServerStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ClientStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.BidiStreamingMethod<Req, Resp> {
    private final AsyncService serviceImpl;
    private final int methodId;

    MethodHandlers(AsyncService serviceImpl, int methodId) {
      this.serviceImpl = serviceImpl;
      this.methodId = methodId;
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public void invoke(Req request, io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        case METHODID_DISBURSE:
          serviceImpl.disburse((com.google.api.HttpBody) request,
              (io.grpc.stub.StreamObserver<com.google.api.HttpBody>) responseObserver);
          break;
        case METHODID_TXN_STATUS:
          serviceImpl.txnStatus((com.google.api.HttpBody) request,
              (io.grpc.stub.StreamObserver<com.google.api.HttpBody>) responseObserver);
          break;
        case METHODID_SEARCH:
          serviceImpl.search((com.google.api.HttpBody) request,
              (io.grpc.stub.StreamObserver<com.google.api.HttpBody>) responseObserver);
          break;
        case METHODID_SYNC_DISBURSE:
          serviceImpl.syncDisburse((com.google.api.HttpBody) request,
              (io.grpc.stub.StreamObserver<com.google.api.HttpBody>) responseObserver);
          break;
        case METHODID_SYNC_TXN_STATUS:
          serviceImpl.syncTxnStatus((com.google.api.HttpBody) request,
              (io.grpc.stub.StreamObserver<com.google.api.HttpBody>) responseObserver);
          break;
        case METHODID_SYNC_SEARCH:
          serviceImpl.syncSearch((com.google.api.HttpBody) request,
              (io.grpc.stub.StreamObserver<com.google.api.HttpBody>) responseObserver);
          break;
        case METHODID_GET_JWKS:
          serviceImpl.getJwks((com.google.api.HttpBody) request,
              (io.grpc.stub.StreamObserver<com.google.api.HttpBody>) responseObserver);
          break;
        case METHODID_ON_RESOLVE:
          serviceImpl.onResolve((com.google.api.HttpBody) request,
              (io.grpc.stub.StreamObserver<com.google.api.HttpBody>) responseObserver);
          break;
        default:
          throw new AssertionError();
      }
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public io.grpc.stub.StreamObserver<Req> invoke(
        io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        default:
          throw new AssertionError();
      }
    }
  }

  public static final io.grpc.ServerServiceDefinition bindService(AsyncService service) {
    return io.grpc.ServerServiceDefinition.builder(getServiceDescriptor())
        .addMethod(
          getDisburseMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              com.google.api.HttpBody,
              com.google.api.HttpBody>(
                service, METHODID_DISBURSE)))
        .addMethod(
          getTxnStatusMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              com.google.api.HttpBody,
              com.google.api.HttpBody>(
                service, METHODID_TXN_STATUS)))
        .addMethod(
          getSearchMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              com.google.api.HttpBody,
              com.google.api.HttpBody>(
                service, METHODID_SEARCH)))
        .addMethod(
          getSyncDisburseMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              com.google.api.HttpBody,
              com.google.api.HttpBody>(
                service, METHODID_SYNC_DISBURSE)))
        .addMethod(
          getSyncTxnStatusMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              com.google.api.HttpBody,
              com.google.api.HttpBody>(
                service, METHODID_SYNC_TXN_STATUS)))
        .addMethod(
          getSyncSearchMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              com.google.api.HttpBody,
              com.google.api.HttpBody>(
                service, METHODID_SYNC_SEARCH)))
        .addMethod(
          getGetJwksMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              com.google.api.HttpBody,
              com.google.api.HttpBody>(
                service, METHODID_GET_JWKS)))
        .addMethod(
          getOnResolveMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              com.google.api.HttpBody,
              com.google.api.HttpBody>(
                service, METHODID_ON_RESOLVE)))
        .build();
  }

  private static abstract class G2pConnectServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoFileDescriptorSupplier, io.grpc.protobuf.ProtoServiceDescriptorSupplier {
    G2pConnectServiceBaseDescriptorSupplier() {}

    @java.lang.Override
    public com.google.protobuf.Descriptors.FileDescriptor getFileDescriptor() {
      return org.gpo.v1.G2PConnectService.getDescriptor();
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.ServiceDescriptor getServiceDescriptor() {
      return getFileDescriptor().findServiceByName("G2pConnectService");
    }
  }

  private static final class G2pConnectServiceFileDescriptorSupplier
      extends G2pConnectServiceBaseDescriptorSupplier {
    G2pConnectServiceFileDescriptorSupplier() {}
  }

  private static final class G2pConnectServiceMethodDescriptorSupplier
      extends G2pConnectServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoMethodDescriptorSupplier {
    private final java.lang.String methodName;

    G2pConnectServiceMethodDescriptorSupplier(java.lang.String methodName) {
      this.methodName = methodName;
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.MethodDescriptor getMethodDescriptor() {
      return getServiceDescriptor().findMethodByName(methodName);
    }
  }

  private static volatile io.grpc.ServiceDescriptor serviceDescriptor;

  public static io.grpc.ServiceDescriptor getServiceDescriptor() {
    io.grpc.ServiceDescriptor result = serviceDescriptor;
    if (result == null) {
      synchronized (G2pConnectServiceGrpc.class) {
        result = serviceDescriptor;
        if (result == null) {
          serviceDescriptor = result = io.grpc.ServiceDescriptor.newBuilder(SERVICE_NAME)
              .setSchemaDescriptor(new G2pConnectServiceFileDescriptorSupplier())
              .addMethod(getDisburseMethod())
              .addMethod(getTxnStatusMethod())
              .addMethod(getSearchMethod())
              .addMethod(getSyncDisburseMethod())
              .addMethod(getSyncTxnStatusMethod())
              .addMethod(getSyncSearchMethod())
              .addMethod(getGetJwksMethod())
              .addMethod(getOnResolveMethod())
              .build();
        }
      }
    }
    return result;
  }
}
