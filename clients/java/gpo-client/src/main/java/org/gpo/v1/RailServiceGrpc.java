package org.gpo.v1;

import static io.grpc.MethodDescriptor.generateFullMethodName;

/**
 * <pre>
 * The contract between the orchestrator and a rail sidecar (see docs/SIDECAR_CONTRACT.md).
 * The orchestrator publishes WorkChunk messages to the rail's AMQP queue "gpo.rail.{rail}". For each
 * delivery a sidecar calls ClaimWorkChunk, executes on the rail only what the claim allows, sends the
 * outcomes on ReportResults, and acknowledges the AMQP delivery only after the orchestrator answered
 * that the outcomes are persisted.
 * Every string field says how long it may be ("At most N characters", counted in Unicode code points);
 * a request with a longer value is refused with INVALID_ARGUMENT (reason FIELD_TOO_LONG).
 * </pre>
 */
@io.grpc.stub.annotations.GrpcGenerated
public final class RailServiceGrpc {

  private RailServiceGrpc() {}

  public static final java.lang.String SERVICE_NAME = "gpo.v1.RailService";

  // Static method descriptors that strictly reflect the proto.
  private static volatile io.grpc.MethodDescriptor<org.gpo.v1.ClaimWorkChunkRequest,
      org.gpo.v1.ClaimWorkChunkResponse> getClaimWorkChunkMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "ClaimWorkChunk",
      requestType = org.gpo.v1.ClaimWorkChunkRequest.class,
      responseType = org.gpo.v1.ClaimWorkChunkResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<org.gpo.v1.ClaimWorkChunkRequest,
      org.gpo.v1.ClaimWorkChunkResponse> getClaimWorkChunkMethod() {
    io.grpc.MethodDescriptor<org.gpo.v1.ClaimWorkChunkRequest, org.gpo.v1.ClaimWorkChunkResponse> getClaimWorkChunkMethod;
    if ((getClaimWorkChunkMethod = RailServiceGrpc.getClaimWorkChunkMethod) == null) {
      synchronized (RailServiceGrpc.class) {
        if ((getClaimWorkChunkMethod = RailServiceGrpc.getClaimWorkChunkMethod) == null) {
          RailServiceGrpc.getClaimWorkChunkMethod = getClaimWorkChunkMethod =
              io.grpc.MethodDescriptor.<org.gpo.v1.ClaimWorkChunkRequest, org.gpo.v1.ClaimWorkChunkResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "ClaimWorkChunk"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.ClaimWorkChunkRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.ClaimWorkChunkResponse.getDefaultInstance()))
              .setSchemaDescriptor(new RailServiceMethodDescriptorSupplier("ClaimWorkChunk"))
              .build();
        }
      }
    }
    return getClaimWorkChunkMethod;
  }

  private static volatile io.grpc.MethodDescriptor<org.gpo.v1.RenewClaimRequest,
      org.gpo.v1.RenewClaimResponse> getRenewClaimMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "RenewClaim",
      requestType = org.gpo.v1.RenewClaimRequest.class,
      responseType = org.gpo.v1.RenewClaimResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<org.gpo.v1.RenewClaimRequest,
      org.gpo.v1.RenewClaimResponse> getRenewClaimMethod() {
    io.grpc.MethodDescriptor<org.gpo.v1.RenewClaimRequest, org.gpo.v1.RenewClaimResponse> getRenewClaimMethod;
    if ((getRenewClaimMethod = RailServiceGrpc.getRenewClaimMethod) == null) {
      synchronized (RailServiceGrpc.class) {
        if ((getRenewClaimMethod = RailServiceGrpc.getRenewClaimMethod) == null) {
          RailServiceGrpc.getRenewClaimMethod = getRenewClaimMethod =
              io.grpc.MethodDescriptor.<org.gpo.v1.RenewClaimRequest, org.gpo.v1.RenewClaimResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "RenewClaim"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.RenewClaimRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.RenewClaimResponse.getDefaultInstance()))
              .setSchemaDescriptor(new RailServiceMethodDescriptorSupplier("RenewClaim"))
              .build();
        }
      }
    }
    return getRenewClaimMethod;
  }

  private static volatile io.grpc.MethodDescriptor<org.gpo.v1.ReportResultsRequest,
      org.gpo.v1.ReportResultsResponse> getReportResultsMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "ReportResults",
      requestType = org.gpo.v1.ReportResultsRequest.class,
      responseType = org.gpo.v1.ReportResultsResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.BIDI_STREAMING)
  public static io.grpc.MethodDescriptor<org.gpo.v1.ReportResultsRequest,
      org.gpo.v1.ReportResultsResponse> getReportResultsMethod() {
    io.grpc.MethodDescriptor<org.gpo.v1.ReportResultsRequest, org.gpo.v1.ReportResultsResponse> getReportResultsMethod;
    if ((getReportResultsMethod = RailServiceGrpc.getReportResultsMethod) == null) {
      synchronized (RailServiceGrpc.class) {
        if ((getReportResultsMethod = RailServiceGrpc.getReportResultsMethod) == null) {
          RailServiceGrpc.getReportResultsMethod = getReportResultsMethod =
              io.grpc.MethodDescriptor.<org.gpo.v1.ReportResultsRequest, org.gpo.v1.ReportResultsResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.BIDI_STREAMING)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "ReportResults"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.ReportResultsRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  org.gpo.v1.ReportResultsResponse.getDefaultInstance()))
              .setSchemaDescriptor(new RailServiceMethodDescriptorSupplier("ReportResults"))
              .build();
        }
      }
    }
    return getReportResultsMethod;
  }

  /**
   * Creates a new async stub that supports all call types for the service
   */
  public static RailServiceStub newStub(io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<RailServiceStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<RailServiceStub>() {
        @java.lang.Override
        public RailServiceStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new RailServiceStub(channel, callOptions);
        }
      };
    return RailServiceStub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports all types of calls on the service
   */
  public static RailServiceBlockingV2Stub newBlockingV2Stub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<RailServiceBlockingV2Stub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<RailServiceBlockingV2Stub>() {
        @java.lang.Override
        public RailServiceBlockingV2Stub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new RailServiceBlockingV2Stub(channel, callOptions);
        }
      };
    return RailServiceBlockingV2Stub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports unary and streaming output calls on the service
   */
  public static RailServiceBlockingStub newBlockingStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<RailServiceBlockingStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<RailServiceBlockingStub>() {
        @java.lang.Override
        public RailServiceBlockingStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new RailServiceBlockingStub(channel, callOptions);
        }
      };
    return RailServiceBlockingStub.newStub(factory, channel);
  }

  /**
   * Creates a new ListenableFuture-style stub that supports unary calls on the service
   */
  public static RailServiceFutureStub newFutureStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<RailServiceFutureStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<RailServiceFutureStub>() {
        @java.lang.Override
        public RailServiceFutureStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new RailServiceFutureStub(channel, callOptions);
        }
      };
    return RailServiceFutureStub.newStub(factory, channel);
  }

  /**
   * <pre>
   * The contract between the orchestrator and a rail sidecar (see docs/SIDECAR_CONTRACT.md).
   * The orchestrator publishes WorkChunk messages to the rail's AMQP queue "gpo.rail.{rail}". For each
   * delivery a sidecar calls ClaimWorkChunk, executes on the rail only what the claim allows, sends the
   * outcomes on ReportResults, and acknowledges the AMQP delivery only after the orchestrator answered
   * that the outcomes are persisted.
   * Every string field says how long it may be ("At most N characters", counted in Unicode code points);
   * a request with a longer value is refused with INVALID_ARGUMENT (reason FIELD_TOO_LONG).
   * </pre>
   */
  public interface AsyncService {

    /**
     * <pre>
     * Claims a delivered chunk: moves its payments to SENT and says, per payment, whether the sidecar may
     * execute it, must first look its idempotency key up on the rail (it may have been executed before),
     * or must skip it (final or cancelled).
     * </pre>
     */
    default void claimWorkChunk(org.gpo.v1.ClaimWorkChunkRequest request,
        io.grpc.stub.StreamObserver<org.gpo.v1.ClaimWorkChunkResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getClaimWorkChunkMethod(), responseObserver);
    }

    /**
     * <pre>
     * Renews a claim's lease (a heartbeat) while the sidecar works on its payments. Fails with
     * FAILED_PRECONDITION (reason LEASE_LOST) when the claim no longer holds every listed payment: the
     * sidecar must then start no new rail call for that claim.
     * </pre>
     */
    default void renewClaim(org.gpo.v1.RenewClaimRequest request,
        io.grpc.stub.StreamObserver<org.gpo.v1.RenewClaimResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getRenewClaimMethod(), responseObserver);
    }

    /**
     * <pre>
     * Streams outcomes; each request is answered once its outcomes are committed.
     * </pre>
     */
    default io.grpc.stub.StreamObserver<org.gpo.v1.ReportResultsRequest> reportResults(
        io.grpc.stub.StreamObserver<org.gpo.v1.ReportResultsResponse> responseObserver) {
      return io.grpc.stub.ServerCalls.asyncUnimplementedStreamingCall(getReportResultsMethod(), responseObserver);
    }
  }

  /**
   * Base class for the server implementation of the service RailService.
   * <pre>
   * The contract between the orchestrator and a rail sidecar (see docs/SIDECAR_CONTRACT.md).
   * The orchestrator publishes WorkChunk messages to the rail's AMQP queue "gpo.rail.{rail}". For each
   * delivery a sidecar calls ClaimWorkChunk, executes on the rail only what the claim allows, sends the
   * outcomes on ReportResults, and acknowledges the AMQP delivery only after the orchestrator answered
   * that the outcomes are persisted.
   * Every string field says how long it may be ("At most N characters", counted in Unicode code points);
   * a request with a longer value is refused with INVALID_ARGUMENT (reason FIELD_TOO_LONG).
   * </pre>
   */
  public static abstract class RailServiceImplBase
      implements io.grpc.BindableService, AsyncService {

    @java.lang.Override public final io.grpc.ServerServiceDefinition bindService() {
      return RailServiceGrpc.bindService(this);
    }
  }

  /**
   * A stub to allow clients to do asynchronous rpc calls to service RailService.
   * <pre>
   * The contract between the orchestrator and a rail sidecar (see docs/SIDECAR_CONTRACT.md).
   * The orchestrator publishes WorkChunk messages to the rail's AMQP queue "gpo.rail.{rail}". For each
   * delivery a sidecar calls ClaimWorkChunk, executes on the rail only what the claim allows, sends the
   * outcomes on ReportResults, and acknowledges the AMQP delivery only after the orchestrator answered
   * that the outcomes are persisted.
   * Every string field says how long it may be ("At most N characters", counted in Unicode code points);
   * a request with a longer value is refused with INVALID_ARGUMENT (reason FIELD_TOO_LONG).
   * </pre>
   */
  public static final class RailServiceStub
      extends io.grpc.stub.AbstractAsyncStub<RailServiceStub> {
    private RailServiceStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected RailServiceStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new RailServiceStub(channel, callOptions);
    }

    /**
     * <pre>
     * Claims a delivered chunk: moves its payments to SENT and says, per payment, whether the sidecar may
     * execute it, must first look its idempotency key up on the rail (it may have been executed before),
     * or must skip it (final or cancelled).
     * </pre>
     */
    public void claimWorkChunk(org.gpo.v1.ClaimWorkChunkRequest request,
        io.grpc.stub.StreamObserver<org.gpo.v1.ClaimWorkChunkResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getClaimWorkChunkMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Renews a claim's lease (a heartbeat) while the sidecar works on its payments. Fails with
     * FAILED_PRECONDITION (reason LEASE_LOST) when the claim no longer holds every listed payment: the
     * sidecar must then start no new rail call for that claim.
     * </pre>
     */
    public void renewClaim(org.gpo.v1.RenewClaimRequest request,
        io.grpc.stub.StreamObserver<org.gpo.v1.RenewClaimResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getRenewClaimMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Streams outcomes; each request is answered once its outcomes are committed.
     * </pre>
     */
    public io.grpc.stub.StreamObserver<org.gpo.v1.ReportResultsRequest> reportResults(
        io.grpc.stub.StreamObserver<org.gpo.v1.ReportResultsResponse> responseObserver) {
      return io.grpc.stub.ClientCalls.asyncBidiStreamingCall(
          getChannel().newCall(getReportResultsMethod(), getCallOptions()), responseObserver);
    }
  }

  /**
   * A stub to allow clients to do synchronous rpc calls to service RailService.
   * <pre>
   * The contract between the orchestrator and a rail sidecar (see docs/SIDECAR_CONTRACT.md).
   * The orchestrator publishes WorkChunk messages to the rail's AMQP queue "gpo.rail.{rail}". For each
   * delivery a sidecar calls ClaimWorkChunk, executes on the rail only what the claim allows, sends the
   * outcomes on ReportResults, and acknowledges the AMQP delivery only after the orchestrator answered
   * that the outcomes are persisted.
   * Every string field says how long it may be ("At most N characters", counted in Unicode code points);
   * a request with a longer value is refused with INVALID_ARGUMENT (reason FIELD_TOO_LONG).
   * </pre>
   */
  public static final class RailServiceBlockingV2Stub
      extends io.grpc.stub.AbstractBlockingStub<RailServiceBlockingV2Stub> {
    private RailServiceBlockingV2Stub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected RailServiceBlockingV2Stub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new RailServiceBlockingV2Stub(channel, callOptions);
    }

    /**
     * <pre>
     * Claims a delivered chunk: moves its payments to SENT and says, per payment, whether the sidecar may
     * execute it, must first look its idempotency key up on the rail (it may have been executed before),
     * or must skip it (final or cancelled).
     * </pre>
     */
    public org.gpo.v1.ClaimWorkChunkResponse claimWorkChunk(org.gpo.v1.ClaimWorkChunkRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getClaimWorkChunkMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Renews a claim's lease (a heartbeat) while the sidecar works on its payments. Fails with
     * FAILED_PRECONDITION (reason LEASE_LOST) when the claim no longer holds every listed payment: the
     * sidecar must then start no new rail call for that claim.
     * </pre>
     */
    public org.gpo.v1.RenewClaimResponse renewClaim(org.gpo.v1.RenewClaimRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getRenewClaimMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Streams outcomes; each request is answered once its outcomes are committed.
     * </pre>
     */
    @io.grpc.ExperimentalApi("https://github.com/grpc/grpc-java/issues/10918")
    public io.grpc.stub.BlockingClientCall<org.gpo.v1.ReportResultsRequest, org.gpo.v1.ReportResultsResponse>
        reportResults() {
      return io.grpc.stub.ClientCalls.blockingBidiStreamingCall(
          getChannel(), getReportResultsMethod(), getCallOptions());
    }
  }

  /**
   * A stub to allow clients to do limited synchronous rpc calls to service RailService.
   * <pre>
   * The contract between the orchestrator and a rail sidecar (see docs/SIDECAR_CONTRACT.md).
   * The orchestrator publishes WorkChunk messages to the rail's AMQP queue "gpo.rail.{rail}". For each
   * delivery a sidecar calls ClaimWorkChunk, executes on the rail only what the claim allows, sends the
   * outcomes on ReportResults, and acknowledges the AMQP delivery only after the orchestrator answered
   * that the outcomes are persisted.
   * Every string field says how long it may be ("At most N characters", counted in Unicode code points);
   * a request with a longer value is refused with INVALID_ARGUMENT (reason FIELD_TOO_LONG).
   * </pre>
   */
  public static final class RailServiceBlockingStub
      extends io.grpc.stub.AbstractBlockingStub<RailServiceBlockingStub> {
    private RailServiceBlockingStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected RailServiceBlockingStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new RailServiceBlockingStub(channel, callOptions);
    }

    /**
     * <pre>
     * Claims a delivered chunk: moves its payments to SENT and says, per payment, whether the sidecar may
     * execute it, must first look its idempotency key up on the rail (it may have been executed before),
     * or must skip it (final or cancelled).
     * </pre>
     */
    public org.gpo.v1.ClaimWorkChunkResponse claimWorkChunk(org.gpo.v1.ClaimWorkChunkRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getClaimWorkChunkMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Renews a claim's lease (a heartbeat) while the sidecar works on its payments. Fails with
     * FAILED_PRECONDITION (reason LEASE_LOST) when the claim no longer holds every listed payment: the
     * sidecar must then start no new rail call for that claim.
     * </pre>
     */
    public org.gpo.v1.RenewClaimResponse renewClaim(org.gpo.v1.RenewClaimRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getRenewClaimMethod(), getCallOptions(), request);
    }
  }

  /**
   * A stub to allow clients to do ListenableFuture-style rpc calls to service RailService.
   * <pre>
   * The contract between the orchestrator and a rail sidecar (see docs/SIDECAR_CONTRACT.md).
   * The orchestrator publishes WorkChunk messages to the rail's AMQP queue "gpo.rail.{rail}". For each
   * delivery a sidecar calls ClaimWorkChunk, executes on the rail only what the claim allows, sends the
   * outcomes on ReportResults, and acknowledges the AMQP delivery only after the orchestrator answered
   * that the outcomes are persisted.
   * Every string field says how long it may be ("At most N characters", counted in Unicode code points);
   * a request with a longer value is refused with INVALID_ARGUMENT (reason FIELD_TOO_LONG).
   * </pre>
   */
  public static final class RailServiceFutureStub
      extends io.grpc.stub.AbstractFutureStub<RailServiceFutureStub> {
    private RailServiceFutureStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected RailServiceFutureStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new RailServiceFutureStub(channel, callOptions);
    }

    /**
     * <pre>
     * Claims a delivered chunk: moves its payments to SENT and says, per payment, whether the sidecar may
     * execute it, must first look its idempotency key up on the rail (it may have been executed before),
     * or must skip it (final or cancelled).
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<org.gpo.v1.ClaimWorkChunkResponse> claimWorkChunk(
        org.gpo.v1.ClaimWorkChunkRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getClaimWorkChunkMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Renews a claim's lease (a heartbeat) while the sidecar works on its payments. Fails with
     * FAILED_PRECONDITION (reason LEASE_LOST) when the claim no longer holds every listed payment: the
     * sidecar must then start no new rail call for that claim.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<org.gpo.v1.RenewClaimResponse> renewClaim(
        org.gpo.v1.RenewClaimRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getRenewClaimMethod(), getCallOptions()), request);
    }
  }

  private static final int METHODID_CLAIM_WORK_CHUNK = 0;
  private static final int METHODID_RENEW_CLAIM = 1;
  private static final int METHODID_REPORT_RESULTS = 2;

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
        case METHODID_CLAIM_WORK_CHUNK:
          serviceImpl.claimWorkChunk((org.gpo.v1.ClaimWorkChunkRequest) request,
              (io.grpc.stub.StreamObserver<org.gpo.v1.ClaimWorkChunkResponse>) responseObserver);
          break;
        case METHODID_RENEW_CLAIM:
          serviceImpl.renewClaim((org.gpo.v1.RenewClaimRequest) request,
              (io.grpc.stub.StreamObserver<org.gpo.v1.RenewClaimResponse>) responseObserver);
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
        case METHODID_REPORT_RESULTS:
          return (io.grpc.stub.StreamObserver<Req>) serviceImpl.reportResults(
              (io.grpc.stub.StreamObserver<org.gpo.v1.ReportResultsResponse>) responseObserver);
        default:
          throw new AssertionError();
      }
    }
  }

  public static final io.grpc.ServerServiceDefinition bindService(AsyncService service) {
    return io.grpc.ServerServiceDefinition.builder(getServiceDescriptor())
        .addMethod(
          getClaimWorkChunkMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              org.gpo.v1.ClaimWorkChunkRequest,
              org.gpo.v1.ClaimWorkChunkResponse>(
                service, METHODID_CLAIM_WORK_CHUNK)))
        .addMethod(
          getRenewClaimMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              org.gpo.v1.RenewClaimRequest,
              org.gpo.v1.RenewClaimResponse>(
                service, METHODID_RENEW_CLAIM)))
        .addMethod(
          getReportResultsMethod(),
          io.grpc.stub.ServerCalls.asyncBidiStreamingCall(
            new MethodHandlers<
              org.gpo.v1.ReportResultsRequest,
              org.gpo.v1.ReportResultsResponse>(
                service, METHODID_REPORT_RESULTS)))
        .build();
  }

  private static abstract class RailServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoFileDescriptorSupplier, io.grpc.protobuf.ProtoServiceDescriptorSupplier {
    RailServiceBaseDescriptorSupplier() {}

    @java.lang.Override
    public com.google.protobuf.Descriptors.FileDescriptor getFileDescriptor() {
      return org.gpo.v1.Rail.getDescriptor();
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.ServiceDescriptor getServiceDescriptor() {
      return getFileDescriptor().findServiceByName("RailService");
    }
  }

  private static final class RailServiceFileDescriptorSupplier
      extends RailServiceBaseDescriptorSupplier {
    RailServiceFileDescriptorSupplier() {}
  }

  private static final class RailServiceMethodDescriptorSupplier
      extends RailServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoMethodDescriptorSupplier {
    private final java.lang.String methodName;

    RailServiceMethodDescriptorSupplier(java.lang.String methodName) {
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
      synchronized (RailServiceGrpc.class) {
        result = serviceDescriptor;
        if (result == null) {
          serviceDescriptor = result = io.grpc.ServiceDescriptor.newBuilder(SERVICE_NAME)
              .setSchemaDescriptor(new RailServiceFileDescriptorSupplier())
              .addMethod(getClaimWorkChunkMethod())
              .addMethod(getRenewClaimMethod())
              .addMethod(getReportResultsMethod())
              .build();
        }
      }
    }
    return result;
  }
}
